"""Serving: turn an ``RPCServer`` into listening sockets."""

from .serve import serve

__all__ = ["serve"]
