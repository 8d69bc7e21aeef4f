"""Edges of the store layer not reached by the contract suite: the memory store's bounds,
the revocation cache healing a store that lost its data (SR-38), and the fleet-wide failed
authentication limiter (SR-40) when the store refuses or its answers expire."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from safe_rpc import MemoryStore, SQLiteStore
from safe_rpc._auth.shared_limiter import StoreAuthLimiter
from safe_rpc._store import memory, sqlite
from safe_rpc._store.base import Revocations, Rule, StoreUnavailable, health_of
from safe_rpc._store.revocations import RevocationView


class SharedMemoryStore(MemoryStore):
    """A memory store that says it is shared (so the view polls it), can lose its data the
    way a Redis restarted without persistence does, and can be switched off."""

    shared = True

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def lose_everything(self) -> None:
        MemoryStore.__init__(self)

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("switched off", reason="ConnectionError")

    def version(self) -> int:
        self._check()
        return super().version()

    def revocations(self) -> Revocations:
        self._check()
        return super().revocations()

    def hit(self, rules: Sequence[Rule]) -> tuple[bool, float]:
        self._check()
        return super().hit(rules)


def test_memory_store_forgets_least_recent_counters_past_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "MAX_COUNTERS", 2)
    store = MemoryStore()
    assert store.describe() == "memory"
    for key in ("a", "b", "c"):
        assert store.hit([Rule(key, 1, 60)]) == (True, 60.0)
    # "a" was forgotten (least recently used): it is admitted again; "c" is still counted.
    assert store.hit([Rule("a", 1, 60)])[0] is True
    assert store.hit([Rule("c", 1, 60)])[0] is False


def test_memory_store_sweeps_expired_claims_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "MAX_CLAIMS", 2)
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    assert store.claim("old", 1001.0)
    assert store.claim("live", 5000.0)
    now[0] = 2000.0
    assert store.claim("new", 3000.0)  # full: "old" (expired) is swept first
    assert "old" not in store._claims
    assert store.claim("live", 6000.0) is False  # a live claim is never swept


def test_sr38_view_writes_back_revocations_a_store_lost(caplog: pytest.LogCaptureFixture) -> None:
    store = SharedMemoryStore()
    view = RevocationView(store, staleness=0.01)
    view.revoke("kid", "k1", None)
    view.revoke("jti", "t1", time.time() + 600)
    view.revoke("sub", "alice", 1000.0)
    view.refresh_sync()  # the view has seen version 3
    store.lose_everything()
    store.revoke("kid", "other", None)  # version 1 < the view's 3: the store lost data
    with caplog.at_level(logging.WARNING, "safe_rpc.store"):
        view.refresh_sync()
    assert "lost revocations" in caplog.text
    held = store.revocations()
    assert held.kids == {"k1", "other"}
    assert "t1" in held.jtis
    assert held.subjects == {"alice": 1000.0}
    assert view.revoked("k1", None, "bob", 0)
    assert view.revoked(None, None, "alice", 999.0)


def test_sr38_view_keeps_its_cache_while_the_store_is_down() -> None:
    store = SharedMemoryStore()
    view = RevocationView(store, staleness=0.01, max_stale=60)
    view.revoke("kid", "k1", None)
    store.down = True
    view.refresh_sync()  # fails: logged once, the cache stays in force
    assert health_of(store).up is False
    assert view.revoked("k1", None, "x", 0)
    store.down = False
    view.refresh_sync()
    assert health_of(store).up is True


def test_view_async_revoke_and_refusal_of_unknown_kinds() -> None:
    store = MemoryStore()
    view = RevocationView(store)
    asyncio.run(view.revoke_async("jti", "t9", time.time() + 60))
    assert "t9" in store.revocations().jtis
    assert view.revoked(None, "t9", "x", 0)
    with pytest.raises(ValueError, match="kid, jti or sub"):
        view.revoke("token", "t9", None)


def test_view_stop_cancels_its_poller_on_a_running_loop() -> None:
    store = SharedMemoryStore()
    view = RevocationView(store, staleness=0.04)

    async def main() -> bool:
        view._checked = -1e9  # stale: the next check starts the poller
        view.revoked(None, None, "x", 0)
        task = view._task
        assert task is not None
        view.stop()
        with pytest.raises(asyncio.CancelledError):
            await task
        return view._task is None

    assert asyncio.run(main())


def test_sr40_fleet_limit_blocks_a_source_another_process_used_up() -> None:
    store = MemoryStore()
    first = StoreAuthLimiter(store, per_minute=2)
    second = StoreAuthLimiter(store, per_minute=2)
    first.record_failure("10.0.0.9")
    first.record_failure("10.0.0.9")
    assert not second.blocked("10.0.0.9")
    second.record_failure("10.0.0.9")  # the store refuses it: the fleet's budget is spent
    assert second.blocked("10.0.0.9")  # blocked by the fleet-wide count, not the local one
    assert not second._local.blocked("10.0.0.9")
    second._until["10.0.0.9"] = time.monotonic() - 1  # the wait the store gave has passed
    assert not second.blocked("10.0.0.9")
    assert "10.0.0.9" not in second._until


def test_sr40_fleet_limit_remembers_a_bounded_number_of_sources() -> None:
    store = MemoryStore()
    limiter = StoreAuthLimiter(store, per_minute=1, max_sources=1)
    limiter.record_failure("a")
    limiter.record_failure("b")
    assert list(limiter._until) == ["b"]


def test_sr40_store_outage_keeps_the_local_limit() -> None:
    store = SharedMemoryStore()
    store.down = True
    limiter = StoreAuthLimiter(store, per_minute=1)
    limiter.record_failure("c")
    assert health_of(store).up is False
    assert limiter.blocked("c")  # the local count still holds


def test_sqlite_sweeps_expired_rows_and_refuses_unknown_kinds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sqlite, "_SWEEP_EVERY", 1)  # sweep on every write
    now = [1000.0]
    store = SQLiteStore(tmp_path / "s.db", clock=lambda: now[0])
    assert store.claim("once", 1001.0)
    store.revoke("jti", "t1", 1001.0)
    now[0] = 2000.0
    store.revoke("kid", "k1", None)  # this write sweeps what expired
    with contextlib.closing(sqlite3.connect(tmp_path / "s.db", isolation_level=None)) as db:
        assert db.execute("SELECT count(*) FROM claims").fetchone() == (0,)
        assert db.execute("SELECT kind, value FROM revocations").fetchall() == [("kid", "k1")]
    asyncio.run(store.ping_async())
    with pytest.raises(ValueError, match="revocation kind"):
        store.revoke("token", "x", None)
    store.close()


def test_sqlite_failed_write_is_rolled_back_and_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    with contextlib.closing(sqlite3.connect(tmp_path / "s.db", isolation_level=None)) as db:
        db.execute("DROP TABLE claims")  # the file was damaged behind the server's back
    with pytest.raises(StoreUnavailable, match="no such table"):
        store.claim("x", 5e9)
    store.revoke("kid", "k1", None)  # the transaction was rolled back: writes still work
    assert store.revocations().kids == {"k1"}
    store.close()
