"""RPCServer on a store: quotas, single-use tokens, shared revocation, and store faults.

Two ``RPCServer`` objects on one store stand for two processes here; tests/test_store_fleet.py
does the same with real ``safe-rpc serve`` processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_support import RedisServer
from store_support import BACKENDS, Handles
from support import check_response, request
from tokens_support import rejected

from safe_rpc import ConfigError, Keyring, Limits, MemoryStore, RedisStore, RPCServer, Store

KEY = {"k1": b"s" * 32}


def make_server(store: Store | None = None, **options: Any) -> RPCServer:
    rpc = RPCServer(keyring=Keyring(KEY, audience="t"), store=store, **options)

    @rpc.method(public=True)
    def ping() -> str:
        return "pong"

    @rpc.method(public=True, rate="2/minute")
    def scarce() -> str:
        return "ok"

    @rpc.method(scopes=["w"])
    def private() -> str:
        return "secret"

    return rpc


def call(rpc: RPCServer, method: str, token: str | None = None, client: str = "10.0.0.1") -> Any:
    return check_response(rpc.dispatch(request(method), token=token, client=client))


def code(answer: Any) -> int | None:
    return answer["error"]["code"] if "error" in answer else None


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, handles: Handles) -> Store:
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return handles.make(request.param, tmp_path, redis)


# -- quotas -----------------------------------------------------------------------------------


def test_method_rate_per_client_then_32004_with_retry_after(store: Store) -> None:
    rpc = make_server(store)
    assert [code(call(rpc, "scarce")) for _ in range(2)] == [None, None]
    refused = call(rpc, "scarce")
    assert code(refused) == -32004
    assert refused["error"]["data"]["retry_after"] in (29, 30)  # whole seconds, 60/2
    assert refused["error"]["data"].keys() == {"retry_after"}
    assert code(call(rpc, "scarce", client="10.0.0.2")) is None  # another address
    assert code(call(rpc, "ping")) is None  # the method without a quota still works


def test_server_rate_counts_every_batch_element_per_principal(store: Store) -> None:
    rpc = make_server(store, rate="3/minute")
    ring = rpc.keyring
    assert isinstance(ring, Keyring)
    token = ring.issue("alice", ["w"])
    batch = json.dumps([json.loads(request("ping", id=i)) for i in range(5)]).encode()
    answers = check_response(rpc.dispatch(batch, token=token, client="10.0.0.1"))
    assert [code(a) for a in answers] == [None, None, None, -32004, -32004]
    # Same principal from another address: same budget. Another principal: its own.
    assert code(call(rpc, "private", token, client="10.9.9.9")) == -32004
    assert code(call(rpc, "private", ring.issue("bob", ["w"]))) is None


def test_quota_is_shared_by_two_servers_on_one_store(store: Store, handles: Handles) -> None:
    one, two = make_server(store), make_server(handles.twin(store))
    # (MemoryStore: the two servers are in this one process and share the object.)
    results = [code(call(rpc, "scarce")) for rpc in (one, two, one, two)]
    assert results == [None, None, -32004, -32004]


def test_quota_under_dispatch_async(store: Store) -> None:
    rpc = make_server(store)

    async def scenario() -> list[int | None]:
        answers = [await rpc.dispatch_async(request("scarce"), client="10.0.0.1") for _ in range(3)]
        await rpc.aclose()
        return [code(check_response(a)) for a in answers]

    assert asyncio.run(scenario()) == [None, None, -32004]


def test_concurrent_batch_elements_count_once_each_under_dispatch_async(store: Store) -> None:
    """dispatch_async runs a batch's elements concurrently; each is still counted once, in
    request order, before any of them runs, and a single-use token is claimed once."""
    rpc = make_server(store, rate="3/minute")
    ring = rpc.keyring
    assert isinstance(ring, Keyring)
    running = [0, 0]  # now, most at once

    @rpc.method(scopes=["w"])
    async def slow() -> str:
        running[0] += 1
        running[1] = max(running)
        await asyncio.sleep(0.05)
        running[0] -= 1
        return "done"

    batch = json.dumps([json.loads(request("slow", id=i)) for i in range(5)]).encode()
    once = ring.issue("bob", ["w"], once=True)  # bob: a budget of his own
    pair = json.dumps([json.loads(request("slow", id=i)) for i in range(2)]).encode()

    async def scenario() -> list[list[int | None]]:
        token = ring.issue("alice", ["w"])
        answers = check_response(await rpc.dispatch_async(batch, token=token))
        again = check_response(await rpc.dispatch_async(request("slow"), token=token))
        first = check_response(await rpc.dispatch_async(pair, token=once, client="10.0.0.7"))
        replay = check_response(await rpc.dispatch_async(pair, token=once, client="10.0.0.7"))
        await rpc.aclose()
        return [[code(a) for a in answers], [code(again)], [code(a) for a in first + replay]]

    quota, after, single = asyncio.run(scenario())
    assert quota == [None, None, None, -32004, -32004]
    assert running[1] == 3  # the three admitted elements ran at once
    assert after == [-32004]  # five counted, not more, not fewer: the budget is spent
    # One message, one claim: both elements run; the same token again is refused whole.
    assert single == [None, None, -32001, -32001]


def test_fused_path_only_without_per_call_store_work(tmp_path: Path) -> None:
    """The fused dispatch path skips the admission hook: any store, rate or keyring turns it
    off (at construction, registration, ``use_store``, a new keyring, ``add_observer``)."""
    plain = RPCServer()
    assert plain._plain
    assert plain.admission is None
    for server in (
        RPCServer(store=MemoryStore()),
        RPCServer(rate="5/minute"),
        RPCServer(keyring=Keyring(KEY, audience="t")),
    ):
        assert not server._plain
        assert server.admission is not None
    rated = RPCServer()

    @rated.method(public=True, rate="1/minute")
    def scarce() -> str:
        return "ok"

    assert not rated._plain
    assert [code(call(rated, "scarce")) for _ in range(2)] == [None, -32004]
    switched = RPCServer()
    switched.use_store(MemoryStore())
    assert not switched._plain
    keyed = RPCServer()

    @keyed.method(public=True)
    def ping() -> str:
        return "pong"

    keyed.keyring = Keyring(KEY, audience="t")
    assert not keyed._plain
    once = keyed.keyring.issue("alice", once=True)
    assert code(call(keyed, "ping", once)) is None
    # Claimed: a replay is refused whole, public methods and rpc.discover included.
    assert code(call(keyed, "ping", once)) == -32001
    assert code(call(keyed, "rpc.discover", once)) == -32001
    observed = RPCServer()
    observed.add_observer(lambda record: None)
    assert not observed._plain


def test_bad_rate_and_quota_failure_are_refused_at_startup() -> None:
    with pytest.raises(ConfigError, match="5/minute"):
        RPCServer(rate="lots")
    with pytest.raises(ConfigError, match="5/minute"):
        RPCServer().method(public=True, rate="5 per minute")
    with pytest.raises(ConfigError, match="closed"):
        RPCServer(quota_failure="maybe")


# -- single-use tokens --------------------------------------------------------------------------


def test_single_use_token_accepted_for_one_message_across_servers(
    store: Store, handles: Handles
) -> None:
    one, two = make_server(store), make_server(handles.twin(store))
    ring = one.keyring
    assert isinstance(ring, Keyring)
    once = ring.issue("alice", ["w"], once=True)
    assert call(one, "private", once)["result"] == "secret"
    # The same token again, here or on the other server: refused like a revoked token.
    assert code(call(one, "private", once)) == -32001
    assert code(call(two, "private", once)) == -32001
    # A batch is one message: both elements run under the one acceptance.
    fresh = ring.issue("alice", ["w"], once=True)
    batch = json.dumps([json.loads(request("private", id=i)) for i in range(2)]).encode()
    answers = check_response(one.dispatch(batch, token=fresh))
    assert [a["result"] for a in answers] == ["secret", "secret"]
    # Ordinary tokens are not affected.
    plain = ring.issue("alice", ["w"])
    assert [code(call(one, "private", plain)) for _ in range(3)] == [None, None, None]


def test_single_use_claim_must_be_true() -> None:
    """A token whose "once" claim is anything but true is refused (it decides something)."""
    ring = Keyring(KEY, audience="t")
    token = ring.issue("a", once=True)
    assert ring.verify(token).claims["once"] is True


# -- revocation through the store ---------------------------------------------------------------


def test_sr38_revocation_reaches_another_server_within_staleness(
    store: Store, handles: Handles
) -> None:
    if not store.shared:
        pytest.skip("MemoryStore is one process: nothing to propagate")
    one, two = make_server(store), make_server(handles.twin(store))
    ring_one, ring_two = one.keyring, two.keyring
    assert isinstance(ring_one, Keyring)
    assert isinstance(ring_two, Keyring)
    tokens = {kind: ring_one.issue(f"user-{kind}", ["w"]) for kind in ("jti", "kid", "sub")}
    later = ring_one.issue("user-late", ["w"])

    async def scenario() -> dict[str, float]:
        for token in tokens.values():
            assert (
                code(check_response(await two.dispatch_async(request("private"), token=token)))
                is None
            )
        principal = ring_one.verify(tokens["jti"])
        ring_one.revoke_jti(principal.token_id or "", expires_at=principal.expires_at)
        ring_one.revoke_subject("user-sub")
        started = time.monotonic()
        seen: dict[str, float] = {}
        while len(seen) < 2 and time.monotonic() - started < 5:
            for kind in ("jti", "sub"):
                answer = check_response(
                    await two.dispatch_async(request("private"), token=tokens[kind])
                )
                if kind not in seen and code(answer) == -32001:
                    seen[kind] = time.monotonic() - started
            await asyncio.sleep(0.02)
        await one.aclose()
        await two.aclose()
        return seen

    seen = asyncio.run(scenario())
    assert set(seen) == {"jti", "sub"}
    assert max(seen.values()) < 1.0 + 0.5  # revocation_staleness, with slack for a busy box
    assert code(call(two, "private", later)) is None  # only what was revoked
    # A server started afterwards (a restart) refuses them at once.
    three = make_server(handles.twin(store))
    assert code(call(three, "private", tokens["jti"])) == -32001
    assert code(call(three, "private", tokens["sub"])) == -32001
    three.keyring.revoke_kid("k1")  # type: ignore[union-attr]
    assert code(call(make_server(handles.twin(store)), "private", later)) == -32001


# -- faults (Redis killed and restarted) --------------------------------------------------------


@pytest.fixture
def lone_redis(tmp_path: Path, redis_server: RedisServer) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill and restart."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_store_down_public_works_quota_closed_private_busy_after_max_stale(
    lone_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limits = Limits(store_timeout=0.3, revocation_staleness=0.2, revocation_max_stale=1.0)
    store = RedisStore(lone_redis.url, timeout=0.3)
    rpc = make_server(store, limits=limits)
    ring = rpc.keyring
    assert isinstance(ring, Keyring)
    token, revoked = ring.issue("alice", ["w"]), ring.issue("mallory", ["w"])
    ring.revoke_jti(ring.verify(revoked).token_id or "")

    async def one(method: str, tok: str | None = None) -> tuple[int | None, float]:
        started = time.monotonic()
        answer = await rpc.dispatch_async(request(method), token=tok, client="10.0.0.1")
        return code(check_response(answer)), time.monotonic() - started

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {"before": await one("private", token)}
        lone_redis.stop()
        killed = time.monotonic()
        out["public"] = await one("ping")
        out["quota"] = await one("scarce")
        out["revoked"] = await one("private", revoked)  # cached revocation still in force
        out["private_early"] = await one("private", token)
        await asyncio.sleep(max(0.0, killed + 1.3 - time.monotonic()))
        out["private_late"] = await one("private", token)
        out["public_late"] = await one("ping")
        lone_redis.start()
        restarted = time.monotonic()
        while (await one("private", token))[0] is not None:
            assert time.monotonic() - restarted < 5, "never recovered"
            await asyncio.sleep(0.05)
        out["recovered_after"] = time.monotonic() - restarted
        out["revoked_after"] = await one("private", revoked)  # re-seeded from the cache
        out["quota_after"] = await one("scarce")
        await rpc.aclose()
        return out

    with caplog.at_level(logging.WARNING, logger="safe_rpc.store"):
        out = asyncio.run(scenario())
    print("fault timings:", out)
    assert out["before"][0] is None
    assert out["public"][0] is None
    assert out["public_late"][0] is None
    assert out["quota"][0] == -32009
    assert out["quota"][1] < 0.3 + 0.5
    assert out["revoked"][0] == -32001
    assert out["private_early"][0] is None
    assert out["private_late"][0] == -32009
    assert out["recovered_after"] < 3.0
    assert out["revoked_after"][0] == -32001
    assert out["quota_after"][0] is None
    lines = [r.getMessage() for r in caplog.records if r.name == "safe_rpc.store"]
    assert sum("unreachable" in line for line in lines) == 1, lines
    assert sum("reachable again" in line for line in lines) == 1, lines


def test_quota_failure_open_admits_while_the_store_is_down(lone_redis: RedisServer) -> None:
    rpc = make_server(RedisStore(lone_redis.url, timeout=0.3), quota_failure="open")
    once = rpc.keyring.issue("a", ["w"], once=True)  # type: ignore[union-attr]
    lone_redis.stop()

    async def scenario() -> list[int | None]:
        answers = [await rpc.dispatch_async(request("scarce"), client="10.0.0.1") for _ in range(3)]
        answers.append(await rpc.dispatch_async(request("private"), token=once))
        await rpc.aclose()
        return [code(check_response(a)) for a in answers]

    assert asyncio.run(scenario()) == [None, None, None, None]


def test_revocation_cache_is_thread_safe(tmp_path: Path, handles: Handles) -> None:
    """Sync handlers verify tokens in worker threads while the cache reloads: every check
    ends in a principal or Unauthenticated, never another exception."""
    from safe_rpc import SQLiteStore, Unauthenticated

    ring = Keyring(KEY, audience="t")
    ring.use_store(handles.keep(SQLiteStore(tmp_path / "s.db")), staleness=0.05)
    writer = handles.keep(SQLiteStore(tmp_path / "s.db"))
    tokens = [ring.issue(f"u{i}", ["w"]) for i in range(4)]
    for token in tokens:
        ring.verify(token)  # cached: the racy path is "cached, then found revoked"
    unexpected: list[BaseException] = []

    def worker() -> None:
        for _ in range(200):
            for token in tokens:
                try:
                    ring.verify(token)
                except Unauthenticated:
                    pass
                except BaseException as exc:
                    unexpected.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for token in tokens:
        writer.revoke("jti", ring.verify(token).token_id or "", time.time() + 60)
        time.sleep(0.03)
    for thread in threads:
        thread.join()
    assert unexpected == []
    time.sleep(0.1)
    assert all(rejected(ring, token) for token in tokens)


def test_store_down_single_use_closed_and_no_task_left_behind(lone_redis: RedisServer) -> None:
    """A single-use token cannot be checked while the store is down: -32009 (closed). After
    ``aclose`` no task of the server is left running (poller, failed-auth writes)."""
    store = RedisStore(lone_redis.url, timeout=0.3)
    rpc = make_server(store, limits=Limits(store_timeout=0.3))
    ring = rpc.keyring
    assert isinstance(ring, Keyring)
    once = ring.issue("a", ["w"], once=True)

    async def scenario() -> tuple[list[int | None], set[asyncio.Task[Any]]]:
        codes = [
            code(
                check_response(
                    await rpc.dispatch_async(request("private"), token=ring.issue("b", ["w"]))
                )
            )
        ]
        rpc.auth_limiter.record_failure("10.0.0.7")  # a store write off the request path
        lone_redis.stop()
        codes.append(code(check_response(await rpc.dispatch_async(request("private"), token=once))))
        rpc.auth_limiter.record_failure("10.0.0.7")
        await rpc.aclose()
        return codes, asyncio.all_tasks() - {asyncio.current_task()}

    async def ready() -> bool:
        try:
            return await rpc.store_ready()
        finally:
            await store.aclose()  # the probe's connection belongs to this event loop

    codes, left = asyncio.run(scenario())
    assert codes == [None, -32009]
    assert not asyncio.run(ready())  # a readiness probe sees the store down
    lone_redis.start()
    assert asyncio.run(ready())
    assert left == set()


def test_serve_refuses_an_unusable_store() -> None:
    """safe_rpc.serve(store=...) checks the store before binding anything."""
    from safe_rpc import serve

    with pytest.raises(ConfigError, match="cannot use the store"):
        serve(make_server(), store="redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="unknown store"):
        serve(make_server(), store="mysql://db/")


def test_serve_closes_the_store_it_opened_when_starting_fails(tmp_path: Path) -> None:
    """A store named by URL is opened by serve(); a port in use afterwards ends the start,
    and the store is closed again (Python 3.13 warns of a collected open sqlite3
    connection, which this suite turns into an error: gc.collect makes it happen here)."""
    import gc
    import socket

    from safe_rpc import StoreUnavailable, serve

    rpc = make_server()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="HTTP"):
            serve(rpc, http=f"127.0.0.1:{port}", store=f"sqlite:///{tmp_path}/s.db")
    gc.collect()
    assert rpc.store.kind == "sqlite"
    with pytest.raises(StoreUnavailable, match="closed database"):  # no handle left open
        rpc.store.ping()
