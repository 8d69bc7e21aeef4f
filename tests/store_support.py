"""Building each store backend for the contract suite, isolated per test."""

from __future__ import annotations

import secrets
from pathlib import Path

from redis_support import RedisServer

from safe_rpc import MemoryStore, RedisStore, SQLiteStore, Store

BACKENDS = ("memory", "sqlite", "redis")


def make_store(
    kind: str, tmp_path: Path, redis: RedisServer | None, *, timeout: float = 1.0
) -> Store:
    """A fresh, empty store of ``kind`` (Redis: a new key prefix on the session server)."""
    if kind == "memory":
        return MemoryStore(timeout=timeout)
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "state.db", timeout=timeout)
    assert redis is not None
    return RedisStore(redis.url, prefix=f"t{secrets.token_hex(4)}:", timeout=timeout)


def twin(store: Store) -> Store:
    """A second handle on the same state, as another process would open it."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path, timeout=store.timeout)
    if isinstance(store, RedisStore):
        return RedisStore(store.url, prefix=store.prefix, timeout=store.timeout)
    return store  # memory: one process is all there is
