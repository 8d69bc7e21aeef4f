"""``SQLiteStore``: state in one SQLite file, shared by the processes of one host.

The standard library's ``sqlite3`` in WAL mode (readers never wait for the writer). Every
decision is one ``BEGIN IMMEDIATE`` transaction, so two worker processes cannot both
admit the tenth call of a quota of ten. Calls from an event loop run in a worker thread
under ``asyncio.timeout``; SQLite's own busy timeout is the same ``timeout``, so no call
waits longer than it. Event channels are in-process only (documented in the README).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Final, TypeVar

from .base import KINDS, EventHub, Revocations, Rule, StoreUnavailable, gcra_all

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS revocations (
    kind TEXT NOT NULL, value TEXT NOT NULL, until REAL, PRIMARY KEY (kind, value));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, tat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, until REAL NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('version', 0);
"""
#: Expired rows are swept on every this-many writes (cheap, keeps the file bounded).
_SWEEP_EVERY: Final = 256


class SQLiteStore:
    """Security state in a SQLite file: durable, shared by processes on one host.

    Example:
        ```python
        from safe_rpc import RPCServer, SQLiteStore

        rpc = RPCServer(store=SQLiteStore("/var/lib/myapp/safe_rpc.db"))
        ```

    Args:
        path: the database file (created with mode 0600 if missing).
        timeout: most seconds any one operation may take.

    Raises:
        StoreUnavailable: when the file cannot be opened or is not a database.
    """

    kind = "sqlite"
    shared = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._writes = 0
        self._events = EventHub()
        try:
            if not self.path.exists():
                self.path.touch(mode=0o600)
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()  # not a usable store: nothing may keep the file open
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from None

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        with self._lock:
            db = self._db
            try:
                if not write:
                    return work(db)
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(db)
                    self._writes += 1
                    if self._writes % _SWEEP_EVERY == 0:
                        self._sweep(db)
                    db.execute("COMMIT")
                    return result
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreUnavailable(
                    f"SQLite store {self.path}: {exc}", reason=str(exc)
                ) from None

    async def _run_async(
        self, work: Callable[[sqlite3.Connection], T], *, write: bool = False
    ) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.to_thread(self._run, work, write=write)
        except TimeoutError:
            raise StoreUnavailable(
                f"SQLite store {self.path} timed out", reason="timed out"
            ) from None

    def _sweep(self, db: sqlite3.Connection) -> None:
        now = self._clock()
        db.execute("DELETE FROM claims WHERE until < ?", (now,))
        db.execute("DELETE FROM revocations WHERE kind = 'jti' AND until < ?", (now,))
        # A counter whose arrival time is in the past holds no state: forgetting it is exact.
        db.execute("DELETE FROM counters WHERE tat < ?", (now,))

    def ping(self) -> None:
        self._run(_ping)

    async def ping_async(self) -> None:
        await self._run_async(_ping)

    # -- revocations ------------------------------------------------------------------------

    def _revoke(self, kind: str, value: str, until: float | None) -> Callable[..., None]:
        if kind not in KINDS:
            raise ValueError(f"revocation kind must be one of {KINDS}")

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO revocations VALUES (?, ?, ?) ON CONFLICT (kind, value) DO UPDATE "
                "SET until = CASE WHEN excluded.until IS NULL OR until IS NULL THEN NULL "
                "ELSE max(until, excluded.until) END",
                (kind, value, until),
            )
            db.execute("UPDATE meta SET value = value + 1 WHERE name = 'version'")

        return work

    def revoke(self, kind: str, value: str, until: float | None) -> None:
        self._run(self._revoke(kind, value, until), write=True)

    async def revoke_async(self, kind: str, value: str, until: float | None) -> None:
        await self._run_async(self._revoke(kind, value, until), write=True)

    def version(self) -> int:
        return self._run(_version)

    async def version_async(self) -> int:
        return await self._run_async(_version)

    def revocations(self) -> Revocations:
        return self._run(_load)

    async def revocations_async(self) -> Revocations:
        return await self._run_async(_load)

    # -- counters and single-use ids -------------------------------------------------------------

    def _hit(self, rules: Sequence[Rule]) -> Callable[[sqlite3.Connection], tuple[bool, float]]:
        def work(db: sqlite3.Connection) -> tuple[bool, float]:
            tats = []
            for rule in rules:
                row = db.execute("SELECT tat FROM counters WHERE key = ?", (rule.key,)).fetchone()
                tats.append(row[0] if row else 0.0)
            admitted, wait, new = gcra_all(tats, self._clock(), rules)
            db.executemany(
                "INSERT OR REPLACE INTO counters VALUES (?, ?)",
                [(rule.key, tat) for rule, tat in zip(rules, new, strict=False)],
            )
            return admitted, wait

        return work

    def hit(self, rules: Sequence[Rule]) -> tuple[bool, float]:
        return self._run(self._hit(rules), write=True)

    async def hit_async(self, rules: Sequence[Rule]) -> tuple[bool, float]:
        return await self._run_async(self._hit(rules), write=True)

    def _claim(self, key: str, until: float) -> Callable[[sqlite3.Connection], bool]:
        def work(db: sqlite3.Connection) -> bool:
            now = self._clock()
            db.execute("DELETE FROM claims WHERE key = ? AND until < ?", (key, now))
            cursor = db.execute("INSERT OR IGNORE INTO claims VALUES (?, ?)", (key, until))
            return cursor.rowcount == 1

        return work

    def claim(self, key: str, until: float) -> bool:
        return self._run(self._claim(key, until), write=True)

    async def claim_async(self, key: str, until: float) -> bool:
        return await self._run_async(self._claim(key, until), write=True)

    # -- events (this process only) --------------------------------------------------------------

    async def publish(self, channel: str, data: bytes) -> None:
        await self._events.publish(channel, data)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._events.subscribe(channel)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    async def aclose(self) -> None:
        self.close()


def _ping(db: sqlite3.Connection) -> None:
    db.execute("SELECT 1").fetchone()


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()[0])


def _load(db: sqlite3.Connection) -> Revocations:
    # One read transaction: the version and the rows belong together.
    db.execute("BEGIN")
    try:
        version = _version(db)
        rows = db.execute("SELECT kind, value, until FROM revocations").fetchall()
    finally:
        db.execute("COMMIT")
    tables: dict[str, dict[str, float]] = {kind: {} for kind in KINDS}
    for kind, value, until in rows:
        tables[kind][value] = float("inf") if until is None else until
    return Revocations(
        version=version,
        kids=frozenset(tables["kid"]),
        jtis=tables["jti"],
        subjects=tables["sub"],
    )
