"""Sync handlers on a bounded pool, and batches run concurrently under one deadline.

SECURITY.md rows SR-45 and SR-14: six blocking sync calls must
not starve every other sync call until its deadline, async handlers must not wait for sync
ones, and a batch must neither run one element after another nor hold the server for
N x ``call_timeout``. Each scenario runs in process and over real HTTP sockets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from core_support import assert_still_serving, make_rpc
from servers import Server, connect, exchange, http_request, read_response, serve
from support import check_response, request

from safe_rpc import Limits, RPCServer
from safe_rpc._core.errors import RegistrationError


def _batch(*items: bytes) -> bytes:
    return b"[" + b",".join(items) + b"]"


def _codes(replies: list[Any]) -> list[Any]:
    return [r["error"]["code"] if "error" in r else r["result"] for r in replies]


def _pool_rpc(limits: Limits) -> tuple[RPCServer, threading.Event]:
    rpc = make_rpc(limits)
    release = threading.Event()

    @rpc.method(public=True)
    def hold() -> str:
        release.wait(10)
        return "held"

    @rpc.method(public=True)
    async def ping() -> str:
        return "pong"

    @rpc.method(public=True)
    async def nap(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @rpc.method(public=True)
    def doze(seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    return rpc, release


# -- in process -------------------------------------------------------------------------------


def test_sr45_full_pool_answers_server_busy_at_once() -> None:
    """With every pool thread held by blocking sync calls, the next sync call gets -32009
    at once, while an async method still answers; once released, sync calls work again."""
    rpc, release = _pool_rpc(Limits(max_threads=2, call_timeout=20))

    async def main() -> tuple[list[Any], Any, float, Any]:
        holders = [asyncio.create_task(rpc.dispatch_async(request("hold", id=i))) for i in range(6)]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        busy = check_response(await rpc.dispatch_async(request("add", [1, 2], id="late")))
        waited = time.monotonic() - started
        pong = check_response(await rpc.dispatch_async(request("ping", id="async")))
        release.set()
        return [check_response(await h) for h in holders], busy, waited, pong

    holders, busy, waited, pong = asyncio.run(main())
    assert busy == {
        "jsonrpc": "2.0",
        "error": {"code": -32009, "message": "Server busy"},
        "id": "late",
    }
    assert waited < 2.0  # at once, not after a deadline
    assert pong["result"] == "pong"
    # Two held the threads and answered; the four that found the pool full were refused.
    assert sorted(_codes(holders), key=str) == [-32009] * 4 + ["held", "held"]
    assert asyncio.run(rpc.dispatch_async(request("add", [2, 3]))) == (
        b'{"jsonrpc":"2.0","result":5,"id":1}'
    )
    assert_still_serving(rpc)


def test_sr45_thread_past_its_deadline_keeps_its_slot() -> None:
    """A sync handler past call_timeout answers -32002 but still holds its thread, so the
    pool (max_threads=1) refuses the next sync call with -32009 until the handler returns."""
    rpc, release = _pool_rpc(Limits(max_threads=1, call_timeout=0.3))

    async def main() -> tuple[Any, Any, Any, Any]:
        late = check_response(await rpc.dispatch_async(request("hold", id=1)))
        busy = check_response(await rpc.dispatch_async(request("add", [1, 2], id=2)))
        pong = check_response(await rpc.dispatch_async(request("ping", id=3)))
        release.set()
        for _ in range(100):  # the worker thread returns and frees its slot
            if rpc._pool.held == 0:
                break
            await asyncio.sleep(0.05)
        after = check_response(await rpc.dispatch_async(request("add", [1, 2], id=4)))
        return late, busy, pong, after

    late, busy, pong, after = asyncio.run(main())
    assert late["error"]["code"] == -32002
    assert busy["error"]["code"] == -32009
    assert pong["result"] == "pong"
    assert after["result"] == 3
    assert_still_serving(rpc)


def test_sr14_batch_elements_run_concurrently() -> None:
    """20 async calls sleeping 0.2 s in one batch finish far below 20 x 0.2 s; the answers
    keep the request order."""
    rpc, _ = _pool_rpc(Limits(call_timeout=10))
    batch = _batch(*(request("nap", [0.2], id=i) for i in range(20)))
    started = time.monotonic()
    replies = check_response(asyncio.run(rpc.dispatch_async(batch)))
    assert time.monotonic() - started < 2.0
    assert [r["id"] for r in replies] == list(range(20))
    assert _codes(replies) == ["done"] * 20
    assert_still_serving(rpc)


def test_sr14_blocking_sync_elements_of_a_batch_spread_over_threads() -> None:
    """Sync calls that block do not wait for each other: 8 x 0.3 s in well under 2.4 s."""
    rpc, _ = _pool_rpc(Limits(call_timeout=10, max_threads=8))
    batch = _batch(*(request("doze", [0.3], id=i) for i in range(8)), request("add", [1, 1], id=8))
    started = time.monotonic()
    replies = check_response(asyncio.run(rpc.dispatch_async(batch)))
    assert time.monotonic() - started < 1.8
    assert _codes(replies) == ["done"] * 8 + [2]
    assert_still_serving(rpc)


def test_sr14_batch_shares_one_call_timeout() -> None:
    """Elements that would each take the whole call_timeout end together at about one
    call_timeout with -32002; the fast elements keep their answers."""
    rpc, release = _pool_rpc(Limits(call_timeout=0.5, max_threads=4))
    batch = _batch(
        request("nap", [30], id=1),
        request("add", [1, 2], id=2),
        request("hold", id=3),
        request("nap", [30], id=4),
        request("hold", id=5),
        request("nap", [0.01], id=6),
    )
    started = time.monotonic()
    try:
        replies = check_response(asyncio.run(rpc.dispatch_async(batch)))
    finally:
        release.set()
    assert time.monotonic() - started < 2.5  # not 4 x 0.5 s, let alone 4 x 30 s
    assert _codes(replies) == [-32002, 3, -32002, -32002, -32002, "done"]
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5, 6]
    assert_still_serving(rpc)


def test_non_blocking_sync_handler_runs_on_the_loop() -> None:
    """``blocking=False`` runs a sync handler inline on the event loop thread; by default
    it runs on a pool thread. Async functions cannot be declared non-blocking."""
    rpc = RPCServer()

    @rpc.method(public=True, blocking=False)
    def where_inline() -> str:
        return threading.current_thread().name

    @rpc.method(public=True)
    def where_pooled() -> str:
        return threading.current_thread().name

    async def main() -> tuple[Any, Any, str]:
        inline = check_response(await rpc.dispatch_async(request("where_inline")))
        pooled = check_response(await rpc.dispatch_async(request("where_pooled")))
        return inline, pooled, threading.current_thread().name

    inline, pooled, loop_thread = asyncio.run(main())
    assert inline["result"] == loop_thread
    assert pooled["result"] != loop_thread
    with pytest.raises(RegistrationError, match="blocking=False is for sync"):

        @rpc.method(public=True, blocking=False)
        async def nope() -> int:
            return 1


# -- over real HTTP sockets --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve("pool_app:rpc") as running:
        yield running


def _post(port: int, body: bytes) -> Any:
    status, _, raw = exchange(port, http_request(body))
    assert status == 200, (status, raw)
    return check_response(raw)


def _assert_serves(server: Server) -> None:
    assert _post(server.port, request("add", [2, 3])) == {"jsonrpc": "2.0", "result": 5, "id": 1}


def test_sr45_http_full_pool_refuses_sync_calls_but_async_answers(server: Server) -> None:
    """Over HTTP (max_threads=2): six concurrent blocking sync calls; the next sync call
    gets -32009 at once while an async call answers; afterwards a normal call works."""
    before = _post(server.port, request("started"))["result"]
    socks = [connect(server.port) for _ in range(6)]
    try:
        for sock in socks:
            sock.sendall(http_request(request("block", [4.0])))
        deadline = time.monotonic() + 5
        while _post(server.port, request("started"))["result"] < before + 2:
            assert time.monotonic() < deadline, "the blocking calls never started"
            time.sleep(0.05)
        started = time.monotonic()
        busy = _post(server.port, request("add", [1, 2], id="late"))
        assert time.monotonic() - started < 2.0  # not after a thread frees up (4 s)
        assert busy["error"]["code"] == -32009
        assert _post(server.port, request("nap", [0.01]))["result"] == "done"
        answers = [json.loads(read_response(sock)[2]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    codes = [a["error"]["code"] for a in answers]
    # Two ran (past the 1 s deadline: -32002), four found the pool full (-32009).
    assert sorted(codes) == [-32009] * 4 + [-32002] * 2
    # The two handlers past their deadline hold their threads until they return (4 s).
    deadline = time.monotonic() + 10
    while "error" in _post(server.port, request("add", [2, 3])):
        assert time.monotonic() < deadline, "the pool never recovered"
        time.sleep(0.1)
    _assert_serves(server)


def test_sr14_http_batch_runs_concurrently_under_one_deadline(server: Server) -> None:
    """Over HTTP: 20 x nap(0.2) in one batch well under 4 s; 4 x nap(5) with call_timeout
    1 s end together near 1 s with -32002, the fast element answered."""
    started = time.monotonic()
    replies = _post(server.port, _batch(*(request("nap", [0.2], id=i) for i in range(20))))
    assert time.monotonic() - started < 2.0
    assert _codes(replies) == ["done"] * 20
    slow = _batch(*(request("nap", [5], id=i) for i in range(4)), request("add", [1, 1], id=9))
    started = time.monotonic()
    replies = _post(server.port, slow)
    assert time.monotonic() - started < 3.0
    assert _codes(replies) == [-32002] * 4 + [2]
    _assert_serves(server)


def test_sr14_a_batch_never_refuses_itself_at_the_process_cap() -> None:
    """With max_inflight=4, a batch of 10 async calls waits for its own slots instead of
    answering -32009 to its own elements (they ran one after another before)."""
    rpc, _ = _pool_rpc(Limits(max_inflight=4, max_threads=2))
    batch = _batch(*(request("nap", [0.01], id=i) for i in range(10)))
    batch_sync = _batch(*(request("add", [i, 1], id=i) for i in range(10)))
    assert _codes(check_response(asyncio.run(rpc.dispatch_async(batch)))) == ["done"] * 10
    replies = check_response(asyncio.run(rpc.dispatch_async(batch_sync)))
    assert _codes(replies) == [i + 1 for i in range(10)]
    assert rpc.inflight == 0
    assert_still_serving(rpc)
