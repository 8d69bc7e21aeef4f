"""The audit's transports against hostile and broken servers on loopback: whatever a server
does (silence, a reset, garbage, an answer over the read cap, a refused token, a botched
WebSocket handshake), the transport reports it as a ``Reply`` the checks can judge, or as
an ``AuditConnectionError`` (exit 2), and never hangs or reads without bound."""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from fake_servers import loopback_server, read_frame

from safe_rpc._audit.budget import Budget
from safe_rpc._audit.transports import (
    READ_CAP,
    AuditConnectionError,
    HTTPTransport,
    TCPTransport,
    Transport,
    _why,
    make_transport,
    parse_target,
)

REQUEST = b'{"jsonrpc":"2.0","method":"safe_rpc_audit_nonexistent_x","id":1}'
TIMEOUT = 1.0


_OPEN: list[Transport] = []


@pytest.fixture(autouse=True)
def _close_transports() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def transport(url: str, *, token: str | None = None, timeout: float = TIMEOUT) -> Transport:
    made = make_transport(parse_target(url), Budget(100, 1000.0), token=token, timeout=timeout)
    _OPEN.append(made)
    return made


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


# -- targets --------------------------------------------------------------------------------------


def test_parse_target_defaults_and_refusals() -> None:
    assert parse_target("http://127.0.0.1/").port == 80
    assert parse_target("https://localhost/").port == 443
    with pytest.raises(ValueError, match="invalid port"):
        parse_target("http://127.0.0.1:99999/")
    assert _why(TimeoutError()) == "connection timed out"
    assert _why(ConnectionRefusedError(111, "Connection refused")).startswith("cannot connect")


# -- HTTP -----------------------------------------------------------------------------------------


def _http_server(answer: Callable[[socket.socket], None]) -> AbstractContextManager[str]:
    def handle(conn: socket.socket, number: int, stop: threading.Event) -> None:
        _read_head(conn)
        answer(conn)

    return loopback_server(handle, http=True)


def test_http_silent_server_is_a_timeout() -> None:
    def silent(conn: socket.socket) -> None:
        conn.recv(1)  # waits until the client gives up and closes

    with _http_server(silent) as url:
        reply = transport(url, timeout=0.3).exchange(REQUEST)
    assert reply.timed_out
    assert reply.body is None


def test_http_reset_and_garbage_are_a_closed_connection() -> None:
    for answer in (_reset, lambda c: c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")):
        with _http_server(answer) as url:
            reply = transport(url).exchange(REQUEST)
        assert reply.closed
        assert reply.body is None


def test_http_answer_over_the_read_cap_is_cut_at_the_cap() -> None:
    def huge(conn: socket.socket) -> None:
        size = READ_CAP + 1024 * 1024
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk = b" " * (1024 * 1024)
        for _ in range(size // len(chunk)):
            conn.sendall(chunk)

    with _http_server(huge) as url:
        reply = transport(url, timeout=10).exchange(REQUEST)
    assert reply.truncated
    assert reply.body is not None
    assert len(reply.body) == READ_CAP


def test_http_empty_message_is_sent_without_a_body() -> None:
    def record(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with _http_server(record) as url:
        http = transport(url)
        assert isinstance(http, HTTPTransport)
        reply = http.exchange(b"")
    assert reply.status == 400
    assert reply.body == b""


# -- TCP (safe_rpc frames) ------------------------------------------------------------------------


def _tcp_server(answer: Callable[[socket.socket, bytes], None]) -> AbstractContextManager[str]:
    def handle(conn: socket.socket, number: int, stop: threading.Event) -> None:
        while (message := read_frame(conn)) is not None:
            answer(conn, message)

    return loopback_server(handle, http=False)


def test_tcp_frame_announcing_more_than_the_cap_is_not_read() -> None:
    def announce(conn: socket.socket, message: bytes) -> None:
        conn.sendall((READ_CAP + 1).to_bytes(4, "big"))  # and nothing after it

    with _tcp_server(announce) as url:
        tcp = transport(url)
        assert isinstance(tcp, TCPTransport)
        reply = tcp.exchange(REQUEST)
        assert reply.truncated
        assert not tcp._connected()  # a new connection for the next check


def test_tcp_silence_close_and_reset() -> None:
    def silent(conn: socket.socket, message: bytes) -> None:
        pass

    with _tcp_server(silent) as url:
        assert transport(url, timeout=0.3).exchange(REQUEST).timed_out
    for cut in (lambda c: c.shutdown(socket.SHUT_RDWR), _reset):

        def hang_up(
            conn: socket.socket, message: bytes, cut: Callable[[socket.socket], None] = cut
        ) -> None:
            conn.sendall(b"\x00\x00")  # half a length prefix, then gone
            cut(conn)

        with _tcp_server(hang_up) as url:
            reply = transport(url).exchange(REQUEST)
        assert reply.closed
        assert reply.body is None


def test_tcp_refused_token_is_a_connection_error() -> None:
    def refuse(conn: socket.socket, message: bytes) -> None:
        error = {"jsonrpc": "2.0", "error": {"code": -32001, "message": "Unauthenticated"}, "id": 0}
        conn.sendall(_frame(json.dumps(error).encode()))

    with _tcp_server(refuse) as url:
        tcp = transport(url, token="not-a-token")
        assert isinstance(tcp, TCPTransport)
        with pytest.raises(AuditConnectionError, match="refused the token"):
            tcp.exchange(REQUEST)
        assert not tcp._connected()


def _marker_id(message: bytes) -> object:
    return json.loads(message).get("id")


def test_tcp_answer_to_a_notification_is_seen_before_the_marker() -> None:
    """Garbage and an answer the server should not have sent arrive before the marker's
    answer: the first of them is reported as the notification's answer."""

    def chatty(conn: socket.socket, message: bytes) -> None:
        if b"marker" in message:
            conn.sendall(_frame(b"{" + message))  # names the marker, is not JSON
            answer = {"jsonrpc": "2.0", "error": {"code": -32601, "message": "x"}}
            conn.sendall(_frame(json.dumps({**answer, "id": _marker_id(message)}).encode()))
        else:
            conn.sendall(_frame(b'{"jsonrpc":"2.0","result":1,"id":null}'))

    with _tcp_server(chatty) as url:
        reply = transport(url).exchange(b'{"jsonrpc":"2.0","method":"x"}', notification=True)
    assert reply.body == b'{"jsonrpc":"2.0","result":1,"id":null}'
    assert not reply.closed


def test_tcp_server_closing_after_a_notification() -> None:
    def close(conn: socket.socket, message: bytes) -> None:
        if b"marker" in message:
            conn.shutdown(socket.SHUT_RDWR)

    with _tcp_server(close) as url:
        tcp = transport(url)
        assert isinstance(tcp, TCPTransport)
        reply = tcp.exchange(b'{"jsonrpc":"2.0","method":"x"}', notification=True)
    assert reply.closed
    assert reply.body is None


# -- WebSocket ------------------------------------------------------------------------------------


def test_ws_connection_refused_and_a_botched_handshake() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, not listening: refused
        port = bound.getsockname()[1]
        with pytest.raises(AuditConnectionError, match="cannot connect"):
            transport(f"ws://127.0.0.1:{port}/").exchange(REQUEST)

    def wrong_accept(conn: socket.socket, number: int, stop: threading.Event) -> None:
        _read_head(conn)
        bogus = base64.b64encode(b"x" * 20).decode()
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + bogus.encode() + b"\r\n\r\n"
        )
        conn.recv(1)

    with loopback_server(wrong_accept, http=True) as url:
        ws_url = url.replace("http://", "ws://")
        with pytest.raises(AuditConnectionError, match="WebSocket handshake failed"):
            transport(ws_url).exchange(REQUEST)


def test_ws_server_that_closes_is_a_closed_connection() -> None:
    from websockets.sync.server import ServerConnection, serve

    def close_at_once(connection: ServerConnection) -> None:
        connection.close()

    with serve(close_at_once, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        ws = transport(f"ws://127.0.0.1:{port}/")
        first = ws.exchange(REQUEST)
        server.shutdown()
    assert first.closed
    assert first.body is None
