"""Shared security state (revocations, quotas, single-use ids, events) behind ``Store``.

Layer: above ``_core``, below ``_auth`` (the keyring reads revocations through it); it
imports no transport, server or command-line module.
"""

from .base import Revocations, Rule, Store, StoreUnavailable
from .memory import MemoryStore
from .redis import RedisStore
from .sqlite import SQLiteStore
from .url import store_from_url

__all__ = [
    "MemoryStore",
    "RedisStore",
    "Revocations",
    "Rule",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "store_from_url",
]
