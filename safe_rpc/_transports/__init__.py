"""Transports: the raw ASGI app and its engine, and framed TCP. Thin layers that move
bytes to and from the core pipeline; no protocol rule lives here."""
