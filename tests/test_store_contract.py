"""One contract for every ``Store`` backend: memory, SQLite and a real redis-server.

Revocations, atomic rate counters, single-use ids, event channels, durability and faults.
Each test runs once per backend; "another process" is a second handle on the same state
(a second SQLite connection, a second Redis client).
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from pathlib import Path

import pytest
from redis_support import RedisServer
from store_support import BACKENDS, Handles

from safe_rpc import ConfigError, RedisStore, SQLiteStore, Store, StoreUnavailable
from safe_rpc import store_from_url as from_url
from safe_rpc._auth.shared_limiter import StoreAuthLimiter
from safe_rpc._store.base import Rule


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, handles: Handles) -> Store:
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return handles.make(request.param, tmp_path, redis)


def test_sr38_revocations_by_kid_jti_and_subject(store: Store, handles: Handles) -> None:
    """Each kind is recorded, the version moves, the later time of two wins."""
    assert store.version() == 0
    store.revoke("kid", "k1", None)
    store.revoke("jti", "j1", time.time() + 60)
    store.revoke("sub", "alice", 1000.0)
    store.revoke("sub", "alice", 500.0)  # an earlier cut-off never shortens a later one
    seen = handles.twin(store).revocations()
    assert seen.version == store.version() >= 4
    assert seen.kids == {"k1"}
    assert set(seen.jtis) == {"j1"}
    assert seen.subjects == {"alice": 1000.0}


def test_revocations_async_api_agrees(store: Store) -> None:
    async def scenario() -> None:
        before = await store.version_async()
        await store.revoke_async("jti", "j2", time.time() + 60)
        assert await store.version_async() > before
        assert "j2" in (await store.revocations_async()).jtis
        await store.aclose()

    asyncio.run(scenario())


def test_expired_jti_revocations_are_forgotten(store: Store) -> None:
    """The jti denylist stays bounded: entries past their token's expiry are swept."""
    store.revoke("jti", "old", time.time() - 5)
    store.revoke("jti", "new", time.time() + 60)
    if isinstance(store, SQLiteStore):
        store.ping()  # SQLite sweeps in batches; the entry is harmless until then
        return
    assert set(store.revocations().jtis) == {"new"}


def test_rate_counter_admits_limit_then_refuses(store: Store) -> None:
    rule = [Rule("q1", 3, 60.0)]
    results = [store.hit(rule) for _ in range(4)]
    assert [admitted for admitted, _ in results] == [True, True, True, False]
    assert results[1][1] == 0.0  # capacity left after the second
    assert 0 < results[2][1] <= 20.0  # after the third: one more in 60/3 s
    assert 0 < results[3][1] <= 20.0
    assert store.hit([Rule("q2", 3, 60.0)])[0]  # another key has its own budget


def test_rate_counter_is_all_or_nothing(store: Store) -> None:
    """A refusal by one rule counts against none (the global budget is not burnt)."""
    tight, loose = Rule("tight", 1, 60.0), Rule("loose", 2, 60.0)
    assert store.hit([loose, tight])[0]
    assert not store.hit([loose, tight])[0]
    assert store.hit([loose])[0]  # still one left: the refused hit was not counted
    assert not store.hit([loose])[0]


def test_rate_counter_is_atomic_across_handles(store: Store, handles: Handles) -> None:
    """Many concurrent deciders on two handles: exactly the limit is admitted."""
    pair = [store, handles.twin(store)]
    admitted: list[bool] = []
    lock = threading.Lock()

    def worker(handle: Store) -> None:
        for _ in range(10):
            ok, _ = handle.hit([Rule("shared", 10, 60.0)])
            with lock:
                admitted.append(ok)

    threads = [threading.Thread(target=worker, args=(pair[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 10
    assert len(admitted) == 40


def test_rate_counter_async_and_concurrent(store: Store) -> None:
    async def scenario() -> list[bool]:
        results = await asyncio.gather(*(store.hit_async([Rule("a", 5, 60.0)]) for _ in range(12)))
        await store.aclose()
        return [admitted for admitted, _ in results]

    assert asyncio.run(scenario()).count(True) == 5


def test_single_use_ids(store: Store, handles: Handles) -> None:
    until = time.time() + 60
    assert store.claim("once:j1", until)
    assert not store.claim("once:j1", until)
    assert not handles.twin(store).claim("once:j1", until)
    assert store.claim("once:j2", until)

    async def scenario() -> tuple[bool, bool]:
        first = await store.claim_async("once:j3", until)
        second = await store.claim_async("once:j3", until)
        await store.aclose()
        return first, second

    assert asyncio.run(scenario()) == (True, False)


def test_sr40_failed_auth_counter_is_shared(store: Store, handles: Handles) -> None:
    """Two processes' limiters on one store: the budget of 4 is spent across both."""
    one, two = StoreAuthLimiter(store, 4), StoreAuthLimiter(handles.twin(store), 4)
    for limiter in (one, two, one):
        limiter.record_failure("10.0.0.9")
    assert not one.blocked("10.0.0.9")
    assert not two.blocked("10.0.0.9")
    two.record_failure("10.0.0.9")  # the fourth failure, fleet-wide
    assert two.blocked("10.0.0.9")
    one.record_failure("10.0.0.9")  # refused by the store: one sees the budget gone
    assert one.blocked("10.0.0.9")
    assert not one.blocked("10.0.0.10")


def test_event_channels(store: Store, handles: Handles) -> None:
    """publish reaches every subscriber of the channel, and no one else."""

    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes]]:
        other = handles.twin(store) if isinstance(store, RedisStore) else store
        async with (
            store.subscribe("prices") as first,
            other.subscribe("prices") as second,
            store.subscribe("other") as unrelated,
        ):
            await asyncio.sleep(0.05)  # Redis: the subscription is registered
            await store.publish("prices", b"1")
            await other.publish("prices", b"2")
            got = [[await anext(first) for _ in range(2)], [await anext(second) for _ in range(2)]]
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await anext(unrelated)
        if other is not store:
            await other.aclose()
        await store.aclose()
        return got[0], got[1], []

    first, second, _ = asyncio.run(scenario())
    assert first == [b"1", b"2"]
    assert second == [b"1", b"2"]


def test_event_channel_names_are_checked(store: Store) -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="channel"):
            await store.publish("bad channel\n", b"x")

    asyncio.run(scenario())


def test_durable_backends_survive_a_restart(store: Store, tmp_path: Path, handles: Handles) -> None:
    """A new handle opened after the first is gone still sees the revocations."""
    store.revoke("kid", "leaked", None)
    if not store.shared:
        return  # MemoryStore: one process, nothing survives (documented)
    store.close()
    reopened = handles.twin(store)
    assert "leaked" in reopened.revocations().kids
    reopened.close()


# -- faults -----------------------------------------------------------------------------------


def test_sqlite_locked_file_times_out(tmp_path: Path, handles: Handles) -> None:
    """A writer holding the file: the call gives up at the timeout, not later."""
    store = handles.keep(SQLiteStore(tmp_path / "s.db", timeout=0.3))
    blocker = handles.keep(SQLiteStore(tmp_path / "s.db"))
    blocker._db.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.hit([Rule("x", 1, 1.0)])
    assert time.monotonic() - started < 2.0

    async def scenario() -> None:
        with pytest.raises(StoreUnavailable):
            await store.claim_async("k", time.time() + 5)

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 2.0
    blocker._db.execute("ROLLBACK")
    assert store.hit([Rule("x", 1, 1.0)])[0]  # and works again once the lock is gone


def test_sqlite_unopenable_path() -> None:
    with pytest.raises(StoreUnavailable, match="cannot open"):
        SQLiteStore("/nonexistent-dir/state.db")


def test_sqlite_file_that_is_not_a_database(tmp_path: Path, handles: Handles) -> None:
    """Refused with StoreUnavailable, and the connection opened to find out is closed
    (Python 3.13 reports a collected unclosed one: gc.collect makes it happen here)."""
    (tmp_path / "junk.db").write_bytes(b"not a database" * 512)
    with pytest.raises(StoreUnavailable, match="cannot open"):
        SQLiteStore(tmp_path / "junk.db")
    gc.collect()
    assert handles.keep(SQLiteStore(tmp_path / "fine.db")).version() == 0


def test_redis_down_then_back(tmp_path: Path, redis_server: RedisServer) -> None:
    """Killed Redis: every call fails within the timeout; restarted: calls work again
    on the same store object (reconnection is automatic)."""
    lone = RedisServer(tmp_path)
    lone.start()
    store = RedisStore(lone.url, timeout=0.5)

    async def scenario() -> list[float]:
        assert await store.claim_async("a", time.time() + 60)
        lone.stop()
        timings = []
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.hit_async([Rule("x", 1, 60.0)])
            timings.append(time.monotonic() - started)
        lone.start()
        assert (await store.hit_async([Rule("x", 1, 60.0)]))[0]
        await store.aclose()
        return timings

    try:
        timings = asyncio.run(scenario())
        assert max(timings) < 1.5
        store.ping()  # the sync client reconnects too
    finally:
        store.close()
        lone.stop()


def test_redis_unresponsive_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    """A Redis that accepts but never answers (SIGSTOP): the call fails at the timeout."""
    lone = RedisServer(tmp_path)
    lone.start()
    store = RedisStore(lone.url, timeout=0.3)
    process = lone.process
    assert process is not None

    async def scenario() -> float:
        await store.ping_async()
        process.send_signal(19)  # SIGSTOP
        started = time.monotonic()
        try:
            with pytest.raises(StoreUnavailable):
                await store.hit_async([Rule("x", 1, 60.0)])
        finally:
            process.send_signal(18)  # SIGCONT
        await store.aclose()
        return time.monotonic() - started

    try:
        assert asyncio.run(scenario()) < 1.0
    finally:
        store.close()
        lone.stop()


def test_redis_wrong_password(tmp_path: Path) -> None:
    locked = RedisServer(tmp_path, password="right-one")
    locked.start()
    try:
        bad = RedisStore(locked.url.replace("right-one", "wrong-one"))
        with pytest.raises(StoreUnavailable, match="password") as caught:
            bad.ping()
        assert "wrong-one" not in str(caught.value)
        good = RedisStore(locked.url)
        good.ping()
        good.close()
        bad.close()
    finally:
        locked.stop()


def test_redis_async_client_is_closed_with_its_event_loop(
    redis_server: RedisServer, handles: Handles
) -> None:
    """Used under asyncio.run and never aclose()d: the asyncio client's connections are
    closed when that loop shuts down (on its own loop), not left open for the garbage
    collector (a ResourceWarning, an error under this suite's warning filters)."""
    store = handles.keep(RedisStore(redis_server.url, prefix="loop-end:"))
    watcher = handles.keep(RedisStore(redis_server.url))

    def connected() -> int:
        info = watcher._call_sync(lambda r: r.info("clients"))
        return int(info["connected_clients"])

    before = connected()
    asyncio.run(store.ping_async())
    gc.collect()
    deadline = time.monotonic() + 5
    while connected() != before:  # the server sees the close a moment later
        assert time.monotonic() < deadline, "the asyncio client's connection is still open"
        time.sleep(0.02)
    asyncio.run(store.ping_async())  # a new loop gets a new client
    store.ping()


# -- URLs -------------------------------------------------------------------------------------


def test_store_from_url(tmp_path: Path) -> None:
    assert from_url("memory").kind == "memory"
    sqlite = from_url(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(sqlite, SQLiteStore)
    assert sqlite.path == tmp_path / "x.db"
    sqlite.close()
    redis = from_url("rediss://:s3cret@redis.example:6380/2")
    assert isinstance(redis, RedisStore)
    assert redis.prefix == "safe_rpc:"
    shared = from_url("redis://127.0.0.1/0?prefix=billing:")
    assert isinstance(shared, RedisStore)
    assert shared.prefix == "billing:"
    assert "?" not in shared.url
    assert "s3cret" not in redis.describe()
    assert "redis.example:6380" in redis.describe()


@pytest.mark.parametrize(
    "url",
    ["", "mem", "sqlite://", "sqlite:///", "redis://", "redis://host:port/0",
     "redis://host/db", "http://host/", "redis://:pw@/0", "redis://h/0?db=2",
     "redis://h/0?prefix=a&prefix=b"],
)  # fmt: skip
def test_store_from_url_refuses_malformed(url: str) -> None:
    with pytest.raises(ConfigError, match="memory, sqlite") as caught:
        from_url(url)
    assert "pw" not in str(caught.value).replace("PASSWORD", "")


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    assert os.stat(tmp_path / "p.db").st_mode & 0o077 == 0
    store.close()
