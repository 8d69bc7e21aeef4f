"""The client side of safe_rpc (see ``_clients`` for the public classes)."""

from ._clients import (
    AsyncBatch,
    AsyncClient,
    AsyncSubscription,
    BatchFuture,
    Client,
    Subscription,
    SyncBatch,
)

__all__ = [
    "AsyncBatch",
    "AsyncClient",
    "AsyncSubscription",
    "BatchFuture",
    "Client",
    "Subscription",
    "SyncBatch",
]
