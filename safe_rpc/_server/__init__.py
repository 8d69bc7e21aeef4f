"""``RPCServer``: registration on top of the core pipeline, and the asyncio driver."""
