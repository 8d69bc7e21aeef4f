"""Building each store backend for the contract suite, isolated per test."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TypeVar

from redis_support import RedisServer

from safe_rpc import MemoryStore, RedisStore, SQLiteStore, Store

BACKENDS = ("memory", "sqlite", "redis")

S = TypeVar("S", bound=Store)


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


class Handles:
    """Every store handle one test opens, closed when the test ends (the ``handles``
    fixture): an unclosed sqlite3 connection is a ResourceWarning since Python 3.13, and a
    Redis client left to the garbage collector warns about its connections."""

    def __init__(self) -> None:
        self._open: list[Store] = []

    def keep(self, store: S) -> S:
        self._open.append(store)
        return store

    def make(
        self, kind: str, tmp_path: Path, redis: RedisServer | None, *, timeout: float = 1.0
    ) -> Store:
        return self.keep(make_store(kind, tmp_path, redis, timeout=timeout))

    def twin(self, store: Store) -> Store:
        other = twin(store)
        return other if other is store else self.keep(other)

    def close(self) -> None:
        while self._open:
            self._open.pop().close()
