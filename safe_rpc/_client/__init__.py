"""The client side of safe_rpc (see ``_clients`` for the public classes)."""

from ._clients import AsyncBatch, AsyncClient, BatchFuture, Client, SyncBatch

__all__ = ["AsyncBatch", "AsyncClient", "BatchFuture", "Client", "SyncBatch"]
