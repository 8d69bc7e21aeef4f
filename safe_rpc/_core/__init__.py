"""The sans-IO core: strict JSON, the JSON-RPC 2.0 envelope, registration, the dispatch
pipeline, errors, limits and the request context. Bytes in, bytes out; no sockets, no
event loop of its own, nothing imported from the layers above."""
