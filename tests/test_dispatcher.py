"""The dispatcher (JSON-RPC 2.0 sections 4 to 6): one pipeline driven sync or async,
notifications, batches, where handlers run, deadlines, the in-flight cap, the Context and
what is logged."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import pytest
from core_support import NORMAL, NORMAL_ANSWER, answer, assert_still_serving, error_code, make_rpc
from support import check_response, request

from safe_rpc import Context, Limits, Principal, RPCServer, Unauthenticated
from safe_rpc._core.protocol import NO_ID, classify


def _server() -> RPCServer:
    rpc = make_rpc()

    @rpc.method(public=True)
    def crash() -> None:
        raise RuntimeError("boom")

    @rpc.method(public=True)
    async def aecho(value: Any) -> Any:
        await asyncio.sleep(0)
        return value

    @rpc.method(public=True)
    def echo(value: Any = None) -> Any:
        return value

    return rpc


def _normalised(raw: bytes | None) -> Any:
    """The parsed answer with random error ids replaced (they differ run to run)."""
    value = check_response(raw)
    for item in value if isinstance(value, list) else [value] if value else []:
        data = item.get("error", {}).get("data")
        if isinstance(data, dict) and "error_id" in data:
            data["error_id"] = "<id>"
    return value


MESSAGES = [
    NORMAL,
    request("add", ["1", 2]),
    request("crash"),
    request("aecho", [{"k": [1, 2]}]),
    request("echo", id=None),
    request("echo", ["n"], id="notification"),
    request("missing"),
    b"[]",
    b"[1, 2]",
    b'{"jsonrpc":"2.0"',
    b"["
    + NORMAL
    + b","
    + request("crash", id=2)
    + b","
    + request("echo", id="notification")
    + b"]",
    b"[" + request("echo", id="notification") + b"," + request("nope", id="notification") + b"]",
]


@pytest.mark.parametrize("data", MESSAGES)
def test_dispatch_and_dispatch_async_agree(data: bytes) -> None:
    """Both drivers give the same answer for every kind of message."""
    rpc = _server()
    sync = _normalised(rpc.dispatch(data))
    asynchronous = _normalised(asyncio.run(rpc.dispatch_async(data)))
    assert sync == asynchronous


@pytest.mark.parametrize(
    ("method", "params"),
    [("missing", None), ("add", ["x", 1]), ("crash", None), ("add", [1, 2]), ("rpc.x", [])],
)
def test_notifications_never_answered_even_on_error(method: str, params: Any) -> None:
    """A request without an id gets no answer, whatever happens to it."""
    rpc = _server()
    data = request(method, params, id="notification")
    assert rpc.dispatch(data) is None
    assert asyncio.run(rpc.dispatch_async(data)) is None
    assert rpc.dispatch(data, token="not-a-token") is None
    assert_still_serving(rpc)


def test_invalid_request_without_id_is_still_answered() -> None:
    """An element that is not a valid request is not a notification: it gets -32600."""
    rpc = _server()
    assert answer(rpc, b'{"jsonrpc":"2.0","method":1}') == {
        "jsonrpc": "2.0",
        "error": {"code": -32600, "message": "Invalid Request"},
        "id": None,
    }


def test_id_null_is_a_request() -> None:
    """``"id": null`` gets a response with ``"id": null``; only a missing id is a notification."""
    rpc = _server()
    assert answer(rpc, request("add", [1, 1], id=None)) == {
        "jsonrpc": "2.0",
        "result": 2,
        "id": None,
    }
    assert answer(rpc, request("missing", id=None))["id"] is None
    assert answer(rpc, request("echo", id="")) == {"jsonrpc": "2.0", "result": None, "id": ""}
    assert answer(rpc, request("echo", id=0))["id"] == 0
    assert answer(rpc, request("echo", id=-(2**63)))["id"] == -(2**63)
    assert answer(rpc, b'{"jsonrpc":"2.0","method":"echo","id":2.0}')["id"] == 2


def test_no_id_sentinel_is_distinct_from_null() -> None:
    """A missing id is the NO_ID sentinel (a notification), never None."""
    assert classify({"jsonrpc": "2.0", "method": "m"}).id is NO_ID
    assert classify({"jsonrpc": "2.0", "method": "m", "id": None}).id is None
    assert repr(NO_ID) == "NO_ID"


def test_batches_are_handled_element_by_element() -> None:
    """Each element gets its own answer, in order; notifications leave no trace."""
    rpc = _server()
    batch = (
        b"["
        + b",".join(
            [
                request("add", [1, 2], id="a"),
                b"5",
                request("echo", ["x"], id="notification"),
                request("crash", id="c"),
                b'{"jsonrpc":"2.0","method":"add","params":[1,2],"id":"d","x":1}',
                request("add", ["1", 2], id="e"),
                request("missing", id="f"),
                request("aecho", [[1]], id="g"),
            ]
        )
        + b"]"
    )
    replies = check_response(rpc.dispatch(batch))
    summary = [(r["id"], r.get("result", r.get("error", {}).get("code"))) for r in replies]
    assert summary == [
        ("a", 3),
        (None, -32600),
        ("c", -32603),
        ("d", -32600),
        ("e", -32602),
        ("f", -32601),
        ("g", [1]),
    ]
    notes = b"[" + request("echo", id="notification") + b"," + request("crash", id="notification")
    assert rpc.dispatch(notes + b"]") is None
    assert_still_serving(rpc)


def test_sync_handlers_run_in_a_worker_thread_under_dispatch_async() -> None:
    """dispatch_async keeps sync handlers off the event loop's thread; dispatch runs inline."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def where() -> str:
        return threading.current_thread().name

    @rpc.method(public=True)
    async def where_async() -> str:
        return threading.current_thread().name

    async def main() -> tuple[Any, Any]:
        sync_thread = check_response(await rpc.dispatch_async(request("where")))["result"]
        async_thread = check_response(await rpc.dispatch_async(request("where_async")))["result"]
        return sync_thread, async_thread

    sync_thread, async_thread = asyncio.run(main())
    here = threading.current_thread().name
    assert sync_thread != here
    assert async_thread == here
    assert answer(rpc, request("where"))["result"] == here


def test_async_handler_through_sync_dispatch() -> None:
    """Outside an event loop, dispatch runs an async handler to completion."""
    rpc = _server()
    assert answer(rpc, request("aecho", ["v"]))["result"] == "v"


def test_async_handler_through_sync_dispatch_inside_a_loop_is_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """dispatch inside a running loop cannot run an async handler: -32603, logged, no hang."""
    rpc = _server()

    async def main() -> Any:
        return check_response(rpc.dispatch(request("aecho", [1])))

    reply = asyncio.run(main())
    assert reply["error"]["code"] == -32603
    assert "dispatch_async" in caplog.text
    assert "dispatch_async" not in json.dumps(reply)


def test_call_timeout_cancels_the_handler() -> None:
    """Past call_timeout the handler is cancelled and the caller gets -32002."""
    rpc = make_rpc(Limits(call_timeout=0.1))
    cancelled: list[str] = []

    @rpc.method(public=True)
    async def slow(tag: str) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(tag)
            raise
        return 1

    started = time.monotonic()
    reply = check_response(asyncio.run(rpc.dispatch_async(request("slow", ["async"]))))
    assert reply["error"] == {"code": -32002, "message": "Request timed out"}
    assert answer(rpc, request("slow", ["sync"]))["error"]["code"] == -32002
    assert time.monotonic() - started < 5
    assert cancelled == ["async", "sync"]
    assert rpc.inflight == 0
    assert_still_serving(rpc)


def test_call_timeout_for_a_sync_handler_under_dispatch_async() -> None:
    """A blocking sync handler past the deadline answers -32002; its late result is dropped."""
    rpc = make_rpc(Limits(call_timeout=0.1))
    release = threading.Event()

    @rpc.method(public=True)
    def blocking() -> int:
        release.wait(10)
        return 1

    async def main() -> Any:
        try:
            return check_response(await rpc.dispatch_async(request("blocking")))
        finally:
            release.set()  # let the worker thread finish before the loop closes

    assert asyncio.run(main())["error"]["code"] == -32002


def test_handler_timeout_error_is_not_a_deadline() -> None:
    """A handler raising its own TimeoutError is an internal error, not -32002."""
    rpc = make_rpc(Limits(call_timeout=5))

    @rpc.method(public=True)
    async def own_timeout() -> int:
        raise TimeoutError("upstream timed out")

    @rpc.method(public=True)
    def own_timeout_sync() -> int:
        raise TimeoutError("upstream timed out")

    for name in ("own_timeout", "own_timeout_sync"):
        raw = asyncio.run(rpc.dispatch_async(request(name)))
        assert raw is not None
        assert b"upstream" not in raw
        assert check_response(raw)["error"]["code"] == -32603
        assert error_code(rpc, request(name)) == -32603


def test_max_inflight_answers_server_busy() -> None:
    """With max_inflight calls running, the next call gets -32009 until one finishes."""
    rpc = make_rpc(Limits(max_inflight=1))
    gate: dict[str, asyncio.Event] = {}

    @rpc.method(public=True)
    async def hold() -> str:
        gate["started"].set()
        await gate["release"].wait()
        return "done"

    async def main() -> tuple[Any, Any, Any]:
        gate["started"], gate["release"] = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(rpc.dispatch_async(request("hold", id=1)))
        await gate["started"].wait()
        assert rpc.inflight == 1
        busy = check_response(await rpc.dispatch_async(request("add", [1, 2], id=2)))
        gate["release"].set()
        done = check_response(await first)
        after = check_response(await rpc.dispatch_async(request("add", [1, 2], id=3)))
        return done, busy, after

    first, busy, after = asyncio.run(main())
    assert first["result"] == "done"
    assert busy == {"jsonrpc": "2.0", "error": {"code": -32009, "message": "Server busy"}, "id": 2}
    assert after["result"] == 3
    assert rpc.inflight == 0


class _Keyring:
    """Accepts the token "good" as alice; ``valid`` controls re-checks of a principal."""

    def __init__(self) -> None:
        self.valid = True

    def verify(self, token: str) -> Principal:
        if token != "good":
            raise Unauthenticated()
        return Principal(subject="alice", scopes=frozenset({"read"}), token_id="j1")

    def still_valid(self, principal: Principal) -> bool:
        return self.valid


def test_context_fields() -> None:
    """The Context carries principal, id, notification flag, method, transport and client."""
    keyring = _Keyring()
    rpc = make_rpc(keyring=keyring)
    seen: list[Context] = []

    @rpc.method(name="ctx.peek", scopes=["read"])
    def peek(ctx: Context) -> str:
        seen.append(ctx)
        return ctx.method

    @rpc.method(public=True)
    def anon(ctx: Context) -> None:
        seen.append(ctx)

    assert answer(rpc, request("ctx.peek", id=9), token="good")["result"] == "ctx.peek"
    rpc.dispatch(request("anon", id="notification"), transport="http", client="10.0.0.1:5")
    asyncio.run(rpc.dispatch_async(request("anon", id=None), transport="tcp"))
    principal = keyring.verify("good")
    assert answer(rpc, request("ctx.peek", id="p"), principal=principal)["result"] == "ctx.peek"

    first, second, third, fourth = seen
    assert first.principal is not None
    assert first.principal.subject == "alice"
    assert (first.request_id, first.is_notification, first.method) == (9, False, "ctx.peek")
    assert (first.transport, first.client) == ("inprocess", None)
    assert second.principal is None
    assert (second.request_id, second.is_notification) == (None, True)
    assert (second.transport, second.client) == ("http", "10.0.0.1:5")
    assert (third.request_id, third.is_notification, third.transport) == (None, False, "tcp")
    assert fourth.principal is principal
    keyring.valid = False
    assert error_code(rpc, request("ctx.peek"), principal=principal) == -32001
    assert error_code(rpc, request("anon"), principal=principal) == -32001
    assert len(seen) == 4


def test_token_without_keyring_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    """A server without a keyring refuses any presented token, even for public methods."""
    rpc = make_rpc()
    caplog.set_level(logging.INFO, logger="safe_rpc")
    assert error_code(rpc, NORMAL, token="anything") == -32001
    with pytest.raises(Unauthenticated):
        rpc.authenticate("anything")
    assert "without a keyring" in caplog.text
    assert "anything" not in caplog.text
    assert answer(rpc, NORMAL) == NORMAL_ANSWER


def test_internal_error_id_logged_with_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """The -32603 error_id is in the log record with the traceback; the text is not sent."""
    rpc = _server()
    raw = rpc.dispatch(request("crash"))
    assert raw is not None
    assert b"boom" not in raw
    assert b"RuntimeError" not in raw
    error_id = check_response(raw)["error"]["data"]["error_id"]
    records = [r for r in caplog.records if error_id in r.getMessage()]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "boom" in caplog.text
    assert "Traceback" in caplog.text
    assert "crash" in record.getMessage()
    other = check_response(rpc.dispatch(request("crash")))["error"]["data"]["error_id"]
    assert other != error_id


def test_hostile_method_names_never_reach_the_log_raw(caplog: pytest.LogCaptureFixture) -> None:
    """SR-43: a method name with ESC/CR/LF never appears unescaped in any log line."""
    caplog.set_level(logging.DEBUG)
    rpc = _server()
    hostile = "\x1b[2J\r\nINFO admin logged in" * 20
    for data in (request(hostile), request(hostile, id="notification"), request(hostile, [1])):
        rpc.dispatch(data)
        asyncio.run(rpc.dispatch_async(data))
    for record in caplog.records:
        line = record.getMessage()
        assert "\x1b" not in line
        assert "\r" not in line
        assert "\n" not in line
    assert_still_serving(rpc)
