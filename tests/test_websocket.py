"""WebSocket on a real engine (uvicorn with our settings, 127.0.0.1:0) with two clients:
the `websockets` library as an independent client, raw sockets for what no library sends,
and our own ``Client``/``AsyncClient``. Every guard has a named test, followed by a normal
call (SECURITY.md: WebSocket rows)."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import closed_within
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin
from ws_support import call, frame, handshake, running_app

sys.path.insert(0, str(Path(__file__).parent / "apps"))
import ws_app
from ws_app import token

from safe_rpc._transports.http import ASGIApp

ADD = call("add", [2, 3], "n")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ASGIApp, int]]:
    with running_app(ws_app.rpc) as running:
        yield running


@pytest.fixture
def port(served: tuple[ASGIApp, int]) -> int:
    return served[1]


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/"


def session(
    port: int, scopes: tuple[str, ...] = ("me", "prices"), **options: Any
) -> ClientConnection:
    ws: ClientConnection = connect(
        url(port), additional_headers={"Authorization": f"Bearer {token(scopes)}"}, **options
    )
    return ws


def ask(ws: ClientConnection, message: str) -> Any:
    ws.send(message)
    return json.loads(ws.recv(timeout=10))


def reply(ws: ClientConnection, message: str) -> Any:
    """Send ``message``; its answer (items of open subscriptions that come first are skipped)."""
    ws.send(message)
    while "id" not in (answer := json.loads(ws.recv(timeout=10))):
        pass
    return answer


def assert_serves(port: int) -> None:
    """A normal call on a new connection, with the independent client."""
    with session(port) as ws:
        assert ask(ws, ADD) == {"jsonrpc": "2.0", "result": 5, "id": "n"}


def close_code(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the server closes; its close code."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        return None if closed.rcvd is None else closed.rcvd.code
    except TimeoutError:
        raise AssertionError(f"still open after {timeout} s") from None


# -- handshake guards ----------------------------------------------------------------------------


def test_sr31_foreign_origin_refused_with_403(port: int) -> None:
    """A handshake with any Origin is refused (empty allow-list): a browser page cannot
    open a socket to us (cross-site WebSocket hijacking); the raw and library views agree."""
    status, sock = handshake(port, {"Origin": "https://evil.example"})
    sock.close()
    assert status == 403
    with pytest.raises(InvalidStatus) as info:
        connect(url(port), origin=Origin("https://evil.example"))
    assert info.value.response.status_code == 403
    assert_serves(port)


def test_sr31_allowed_origin_accepted() -> None:
    """An origin on ``allowed_origins`` is accepted, exactly (no prefix match)."""
    with running_app(ws_app.rpc, allowed_origins=["https://app.example"]) as (_, port):
        with connect(url(port), origin=Origin("https://app.example")) as ws:
            assert ask(ws, call("rpc.authenticate", [token()], 0))["result"]["subject"] == "alice"
            assert ask(ws, ADD)["result"] == 5
        status, sock = handshake(port, {"Origin": "https://app.example.evil"})
        sock.close()
        assert status == 403
        assert_serves(port)


def test_sr23_host_not_allowed_refused(port: int) -> None:
    """DNS rebinding: a Host outside the allow-list gets 403 before any upgrade."""
    status, sock = handshake(port, host="rebind.evil.example")
    sock.close()
    assert status == 403
    assert_serves(port)


def test_websocket_off_refuses_handshakes() -> None:
    """``ASGIApp(websocket=False)``: handshakes are refused (403), HTTP still serves."""
    with running_app(ws_app.rpc, websocket=False) as (_, port):
        status, sock = handshake(port)
        sock.close()
        assert status == 403


# -- authentication -----------------------------------------------------------------------------


def test_auth_bearer_token_at_handshake(port: int) -> None:
    """A token in Authorization authenticates the connection; calls see the principal."""
    with session(port) as ws:
        assert ask(ws, call("whoami"))["result"] == "alice via websocket"


def test_auth_bad_bearer_token_refused_with_401(port: int) -> None:
    """A forged token at the handshake: 401, no socket."""
    with pytest.raises(InvalidStatus) as info:
        connect(url(port), additional_headers={"Authorization": "Bearer x.y.z"})
    assert info.value.response.status_code == 401
    assert_serves(port)


def test_auth_first_message_rpc_authenticate(port: int) -> None:
    """Without a handshake token (browsers), the first message authenticates."""
    with connect(url(port)) as ws:
        answer = ask(ws, call("rpc.authenticate", {"token": token()}, 0))
        assert answer["result"]["subject"] == "alice"
        assert ask(ws, call("whoami"))["result"] == "alice via websocket"


def test_sr30_preauth_first_message_must_authenticate(port: int) -> None:
    """Any other first message gets -32001 and a close (1008)."""
    with connect(url(port)) as ws:
        assert ask(ws, ADD)["error"]["code"] == -32001
        assert close_code(ws) == 1008
    assert_serves(port)


def test_sr30_preauth_authenticate_notification_gets_no_answer(port: int) -> None:
    """A bad rpc.authenticate sent as a notification is not answered; the socket closes."""
    with connect(url(port)) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "method": "rpc.authenticate", "params": ["x"]}))
        assert close_code(ws) == 1008
    assert_serves(port)


def test_sr27_preauth_message_cap(port: int) -> None:
    """Before authenticating, a message over the 8 KiB pre-auth cap closes with 1009 (the
    engine refuses it from its frame header); after, the request limit applies."""
    with connect(url(port)) as ws:
        big = call("rpc.authenticate", {"token": "t" * 9000}, 0)
        ws.send(big)
        assert close_code(ws) == 1009  # refused from the frame header, never buffered
    with connect(url(port)) as ws:  # authenticated, the same size is only a bad token
        assert reply(ws, call("rpc.authenticate", [token()], 0))["result"]["subject"] == "alice"
        assert reply(ws, big)["error"]["code"] == -32001
    assert_serves(port)


def test_sr28_preauth_deadline(port: int) -> None:
    """Connect without a token and say nothing: closed at the auth deadline (1 s)."""
    status, sock = handshake(port)
    with sock:
        assert status == 101
        assert 0.7 <= closed_within(sock, 4.0) < 4.0
    assert_serves(port)


def test_sr40_failed_handshakes_rate_limited() -> None:
    """After the failure budget, handshakes from that address get 429 unverified."""
    from safe_rpc import FailedAuthLimiter, RPCServer

    rpc = RPCServer(keyring=ws_app.keyring, limits=ws_app.LIMITS, auth_limiter=FailedAuthLimiter(3))

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    with running_app(rpc) as (_, port):
        statuses = []
        for _ in range(4):
            with pytest.raises(InvalidStatus) as info:
                connect(url(port), additional_headers={"Authorization": "Bearer bad"})
            statuses.append(info.value.response.status_code)
        assert statuses == [401, 401, 401, 429]
        with connect(url(port), source_address=("127.0.0.2", 0)) as ws:  # another address
            assert ask(ws, call("rpc.authenticate", [token()], 0))["result"]["subject"] == "alice"
            assert ask(ws, ADD)["result"] == 5


# -- message guards -----------------------------------------------------------------------------


def test_binary_message_closes_1003(port: int) -> None:
    """JSON-RPC messages are text: a binary message closes with 1003."""
    with session(port) as ws:
        ws.send(ADD.encode())
        assert close_code(ws) == 1003
    assert_serves(port)


def test_sr32_oversize_message_closes_1009(port: int) -> None:
    """A message over max_request_bytes (64 KiB here) closes with 1009, unbuffered."""
    with session(port, max_size=None) as ws:
        ws.send(call("add", ["x" * (70 * 1024), 1]))
        assert close_code(ws) == 1009
    status, sock = handshake(port, {"Authorization": f"Bearer {token()}"})
    with sock:  # a frame header announcing 1 GiB is refused from the header alone
        assert status == 101
        sock.sendall(frame(b"", opcode=1)[:1] + bytes([0x80 | 127]) + (1 << 30).to_bytes(8, "big"))
        closed_within(sock, 3.0)
    assert_serves(port)


def test_inflight_cap_per_connection(port: int) -> None:
    """Ten slow calls at once on one connection run at most four at a time (the cap);
    all are answered."""
    ws_app.state["peak"] = 0
    with session(port) as ws:
        for i in range(10):
            ws.send(call("slow", [0.2], i))
        answers = [json.loads(ws.recv(timeout=10)) for _ in range(10)]
    assert sorted(a["id"] for a in answers) == list(range(10))
    assert max(a["result"] for a in answers) <= 4
    assert ws_app.state["peak"] <= 4
    assert_serves(port)


def test_sr29_ping_timeout_closes(port: int) -> None:
    """A peer that never answers pings (0.5 s interval, 1 s timeout) is cut off."""
    status, sock = handshake(port, {"Authorization": f"Bearer {token()}"})
    with sock:
        assert status == 101
        assert closed_within(sock, 4.0) < 4.0
    assert_serves(port)


def test_sr29_write_deadline_and_pending_bytes_non_reading_client(
    served: tuple[ASGIApp, int],
) -> None:
    """A client that sends calls with large answers and never reads: the server stops
    reading it (pending bytes over 256 KiB), aborts it after write_timeout (2 s) and
    releases what it held; another client is served meanwhile."""
    app, port = served
    status, hog = handshake(port, {"Authorization": f"Bearer {token()}"})
    with hog:
        assert status == 101
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.settimeout(0.5)
        sent = 0
        try:
            for i in range(2000):  # 20 KB ids: 40 MB cannot all sit in socket buffers
                hog.sendall(frame(call("blob", [60_000], f"{i}{'p' * 20_000}").encode()))
                sent += 1
        except (TimeoutError, OSError):
            pass
        assert sent < 2000  # the server stopped reading this connection
        assert_serves(port)
        closed_within(hog, 2.0 + 4.0)
    time.sleep(0.3)
    assert ws_app.rpc.pending_budget.used == 0
    assert app.websocket is not None
    assert app.websocket.connections == 0
    assert_serves(port)


def test_connection_cap_per_client_and_total(port: int) -> None:
    """Four connections per address, eight in all: past either, 503 before upgrading."""
    with contextlib.ExitStack() as held:
        for _ in range(4):
            held.enter_context(session(port))
        with pytest.raises(InvalidStatus) as info, session(port):
            pass
        assert info.value.response.status_code == 503
        for _ in range(4):
            held.enter_context(session(port, source_address=("127.0.0.2", 0)))
        with pytest.raises(InvalidStatus) as info, session(port, source_address=("127.0.0.3", 0)):
            pass
        assert info.value.response.status_code == 503
    time.sleep(0.3)
    assert_serves(port)


# -- subscriptions ------------------------------------------------------------------------------


def items(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < count:
        message = json.loads(ws.recv(timeout=10))
        if message.get("method") == "rpc.subscription":
            out.append(message["params"])
    return out


def test_subscription_items_end_and_id(port: int) -> None:
    """The call answers a 128-bit id; items, then the end, arrive as notifications."""
    with session(port) as ws:
        answer = ask(ws, call("countdown", [3], 7))
        sid = answer["result"]
        assert len(sid) == 32
        assert int(sid, 16) >= 0  # 128 bits of hex
        assert items(ws, 4) == [
            {"subscription": sid, "result": 3},
            {"subscription": sid, "result": 2},
            {"subscription": sid, "result": 1},
            {"subscription": sid, "end": True},
        ]
        assert ask(ws, ADD)["result"] == 5


def test_subscription_failure_is_an_error_notification_without_text(port: int) -> None:
    """A generator that raises ends its subscription with -32603 and an error id only."""
    with session(port) as ws:
        sid = ask(ws, call("broken", None, 1))["result"]
        first, last = items(ws, 2)
        assert first == {"subscription": sid, "result": 1}
        assert last["error"]["code"] == -32603
        assert "secret" not in json.dumps(last)
        assert set(last["error"]["data"]) == {"error_id"}
        assert ask(ws, ADD)["result"] == 5


def test_subscription_params_validated_like_a_method(port: int) -> None:
    """Strict params: "3" is not an int; a missing scope hides the subscription."""
    with session(port) as ws:
        assert ask(ws, call("countdown", ["3"]))["error"]["code"] == -32602
    with session(port, scopes=("me",)) as ws:
        assert ask(ws, call("ticker", {"symbol": "EURUSD"}))["error"]["code"] == -32601
    assert_serves(port)


def test_subscription_over_http_is_method_not_found(port: int) -> None:
    """Plain HTTP has nowhere to stream to: -32601 (rpc.unsubscribe too)."""
    import httpx

    headers = {"Authorization": f"Bearer {token()}"}
    for message in (call("countdown", [3]), call("rpc.unsubscribe", ["x"])):
        answer = httpx.post(
            f"http://127.0.0.1:{port}/",
            content=message,
            headers={**headers, "Content-Type": "application/json"},
        ).json()
        assert answer["error"]["code"] == -32601
    assert (
        json.loads(ws_app.rpc.dispatch(call("countdown", [3]).encode()) or b"")["error"]["code"]
        == -32601
    )
    assert_serves(port)


def test_subscription_cap_per_connection(port: int) -> None:
    """Three subscriptions per connection here; the fourth gets -32009. A subscribe sent
    as a notification opens nothing (nobody could learn its id)."""
    with session(port) as ws:
        unheard = {"jsonrpc": "2.0", "method": "ticker", "params": ["S", 5.0]}
        ws.send(json.dumps([unheard, unheard, unheard, json.loads(ADD)]))
        assert json.loads(ws.recv(timeout=10)) == [{"jsonrpc": "2.0", "result": 5, "id": "n"}]
        for i in range(3):
            assert "result" in reply(ws, call("ticker", {"symbol": "S", "every": 5.0}, i))
        assert reply(ws, call("ticker", {"symbol": "S"}, 9))["error"]["code"] == -32009
    assert_serves(port)


def test_unsubscribe_from_another_connection_refused(port: int) -> None:
    """The id is bound to its connection: another connection (same principal) cannot
    cancel it or see its items; the owner can."""
    with session(port) as owner, session(port) as other:
        sid = ask(owner, call("ticker", {"symbol": "A", "every": 0.05}, 1))["result"]
        assert ask(other, call("rpc.unsubscribe", {"subscription": sid}, 2))["result"] is False
        assert ask(other, call("rpc.unsubscribe", {"subscription": "0" * 32}, 3))["result"] is False
        assert len(items(owner, 3)) == 3  # still flowing
        assert reply(owner, call("rpc.unsubscribe", [sid], 4)) == {
            "jsonrpc": "2.0",
            "result": True,
            "id": 4,
        }
        assert ask(other, ADD)["result"] == 5
        with pytest.raises(TimeoutError):
            other.recv(timeout=0.3)  # never saw a single item of the owner's stream


def test_expiry_during_subscription_ends_with_error_notification(port: int) -> None:
    """The token expires mid-stream: the next item is not sent; the subscription ends with
    -32001, and calls get -32001 until the connection authenticates again."""
    with session(port) as ws:
        sid = ask(ws, call("ticker", {"symbol": "E", "every": 0.05}, 1))["result"]
        items(ws, 2)
        ws_app.clock.offset = 3600.0
        try:
            while True:
                params = items(ws, 1)[0]
                if "error" in params:
                    break
            assert params == {
                "subscription": sid,
                "error": {"code": -32001, "message": "Unauthenticated"},
            }
            assert reply(ws, call("whoami"))["error"]["code"] == -32001
        finally:
            ws_app.clock.offset = 0.0
        assert reply(ws, call("rpc.authenticate", [token()], 0))["result"]["subject"] == "alice"
        assert reply(ws, call("whoami"))["result"] == "alice via websocket"


def test_revocation_rechecked_on_every_call_and_item(port: int) -> None:
    """Revoking the token's jti stops its calls and its subscriptions at once."""
    revoked = token()
    principal = ws_app.keyring.verify(revoked)
    with connect(url(port), additional_headers={"Authorization": f"Bearer {revoked}"}) as ws:
        ask(ws, call("ticker", {"symbol": "R", "every": 0.05}, 1))
        items(ws, 1)
        assert principal.token_id is not None
        ws_app.keyring.revoke_jti(principal.token_id, expires_at=principal.expires_at)
        while "error" not in (params := items(ws, 1)[0]):
            pass
        assert params["error"]["code"] == -32001
        assert reply(ws, call("whoami"))["error"]["code"] == -32001
    assert_serves(port)


def test_slow_consumer_ends_only_that_subscription(port: int) -> None:
    """A burst the client does not read in time ends *that* subscription with -32011; the
    connection and its other subscription carry on."""
    with session(port, max_queue=1) as ws:
        slow_id = reply(ws, call("ticker", {"symbol": "K", "every": 0.2}, 1))["result"]
        burst_id = reply(ws, call("burst", [30_000, 400], 2))["result"]
        time.sleep(1.0)  # not reading: the socket fills, the server's queue overflows
        seen: dict[str, list[dict[str, Any]]] = {slow_id: [], burst_id: []}
        deadline = time.monotonic() + 10
        while len(seen[slow_id]) < 10 and time.monotonic() < deadline:
            params = items(ws, 1)[0]
            seen[params["subscription"]].append(params)
        ends = [p for p in seen[burst_id] if "result" not in p]
        assert ends == [
            {"subscription": burst_id, "error": {"code": -32011, "message": "Slow consumer"}}
        ]
        assert len([p for p in seen[burst_id] if "result" in p]) < 400
        assert all("result" in p for p in seen[slow_id][-3:])  # still flowing
        assert reply(ws, ADD)["result"] == 5


def test_events_published_reach_subscribers(port: int) -> None:
    """``rpc.publish`` -> ``ctx.events``: an item published by one connection reaches the
    subscription of another."""
    with session(port) as reader, session(port) as writer:
        sid = ask(reader, call("news", {"topic": "eu"}, 1))["result"]
        time.sleep(0.1)  # the generator is listening
        assert ask(writer, call("announce", ["eu", "rates up"], 2))["result"] is True
        assert ask(writer, call("announce", ["us", "not for eu"], 3))["result"] is True
        assert ask(writer, call("announce", ["eu", "rates down"], 4))["result"] is True
        assert items(reader, 2) == [
            {"subscription": sid, "result": "rates up"},
            {"subscription": sid, "result": "rates down"},
        ]


def test_sr29_write_deadline_aborts_a_socket_that_stops_reading() -> None:
    """With pending-bytes bounds too large to matter, a peer that stops reading two 4 MB
    answers is aborted at write_timeout (1 s) by the write deadline alone."""
    import big_app

    rpc = big_app.write_deadline_server()
    with running_app(rpc) as (app, port):
        status, sock = handshake(port)
        with sock:
            assert status == 101
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            for i in range(2):
                sock.sendall(frame(call("blob", [4_000_000], i).encode()))
            time.sleep(0.5)
            assert app.websocket is not None
            assert app.websocket.connections == 1  # still writing to it
            assert rpc.pending_budget.used > 0
            time.sleep(3.0)  # never reading: the deadline, not a drain, must end it
            assert app.websocket.connections == 0
            assert rpc.pending_budget.used == 0
            closed_within(sock, 5.0)


def test_work_of_a_gone_connection_is_dropped(port: int) -> None:
    """Four slow calls hold the in-flight cap (reading paused); the peer vanishes: the
    calls are cancelled at once, not run to their end for nobody."""
    ws_app.state["running"] = 0
    status, sock = handshake(port, {"Authorization": f"Bearer {token()}"})
    assert status == 101
    for i in range(6):
        sock.sendall(frame(call("slow", [30.0], i).encode()))
    deadline = time.monotonic() + 5
    while ws_app.state["running"] < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ws_app.state["running"] == 4  # the cap: two more wait unread
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # a reset: gone without a goodbye
    deadline = time.monotonic() + 3
    while ws_app.state["running"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ws_app.state["running"] == 0
    assert_serves(port)
