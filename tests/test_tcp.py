"""The framed TCP transport against a real asyncio server on 127.0.0.1 (issue 5,
SR-27 to SR-30, SR-40). The served app has short deadlines: auth 1 s, frame 1 s, idle 2 s."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from corpora import JSONTESTSUITE
from servers import serve
from tcp_support import auth, connect, is_closed, recv, running_tcp, send

from safe_rpc import Keyring, RPCServer
from safe_rpc._core.framing import encode_frame
from safe_rpc._transports.tcp import TCPServer

sys.path.insert(0, str(Path(__file__).parent / "apps"))
import http_app

ADD = {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}


def token(scopes: tuple[str, ...] = ("me",), ttl: int = 600) -> str:
    return http_app.keyring.issue("alice", scopes, ttl=ttl)


@pytest.fixture(scope="module")
def tcp() -> Iterator[tuple[TCPServer, int]]:
    with running_tcp(http_app.rpc) as running:
        yield running


def session(port: int) -> socket.socket:
    sock = connect(port)
    assert auth(sock, token())["result"]["subject"] == "alice"
    return sock


def assert_serves(port: int) -> None:
    with session(port) as sock:
        send(sock, ADD)
        assert recv(sock)["result"] == 5


def test_authenticated_calls(tcp: tuple[TCPServer, int]) -> None:
    """After rpc.authenticate, calls run with the principal and the tcp transport."""
    with session(tcp[1]) as sock:
        send(sock, {"jsonrpc": "2.0", "method": "whoami", "id": 2})
        assert recv(sock) == {"jsonrpc": "2.0", "result": "alice via tcp", "id": 2}


def test_sr30_first_frame_must_authenticate(tcp: tuple[TCPServer, int]) -> None:
    """A normal call as first frame gets -32001 and the connection is closed."""
    with connect(tcp[1]) as sock:
        send(sock, ADD)
        assert recv(sock)["error"]["code"] == -32001
        assert is_closed(sock, 2)
    assert_serves(tcp[1])


@pytest.mark.parametrize(
    "params", [{"token": "garbage"}, {"token": 5}, {"tok": "x"}, ["a", "b"], None]
)
def test_sr30_bad_authentication_closes(tcp: tuple[TCPServer, int], params: object) -> None:
    """Bad tokens and malformed authenticate calls get -32001 and a close."""
    with connect(tcp[1]) as sock:
        message: dict[str, object] = {"jsonrpc": "2.0", "method": "rpc.authenticate", "id": 9}
        if params is not None:
            message["params"] = params
        send(sock, message)
        assert recv(sock)["error"]["code"] == -32001
        assert is_closed(sock, 2)


def test_sr30_expired_token_rechecked_on_every_call() -> None:
    """A principal whose token expires mid-connection gets -32001 on its next call;
    re-authenticating on the same connection restores it."""
    from tokens_support import Clock

    clock = Clock(time.time())
    ring = Keyring({"k": b"k" * 32}, audience="t", clock=clock)
    rpc = RPCServer(keyring=ring)

    @rpc.method(scopes=["x"])
    def ping() -> str:
        return "pong"

    with running_tcp(rpc) as (_, port), connect(port) as sock:
        assert "result" in auth(sock, ring.issue("a", ["x"], ttl=60))
        send(sock, {"jsonrpc": "2.0", "method": "ping", "id": 1})
        assert recv(sock)["result"] == "pong"
        clock.now += 120
        send(sock, {"jsonrpc": "2.0", "method": "ping", "id": 2})
        assert recv(sock)["error"]["code"] == -32001
        assert "result" in auth(sock, ring.issue("a", ["x"], ttl=60))
        send(sock, {"jsonrpc": "2.0", "method": "ping", "id": 3})
        assert recv(sock)["result"] == "pong"


def test_sr27_huge_length_prefix_refused_at_once(tcp: tuple[TCPServer, int]) -> None:
    """0xFFFFFFFF gets one -32007 error frame and a close, without waiting for data."""
    with connect(tcp[1]) as sock:
        started = time.monotonic()
        sock.sendall(b"\xff\xff\xff\xff")
        assert recv(sock)["error"]["code"] == -32007
        assert is_closed(sock, 2)
        assert time.monotonic() - started < 0.9
    assert_serves(tcp[1])


def test_sr27_zero_length_frame(tcp: tuple[TCPServer, int]) -> None:
    """Length 0 gets -32600 and a close."""
    with connect(tcp[1]) as sock:
        sock.sendall(b"\x00\x00\x00\x00")
        assert recv(sock)["error"]["code"] == -32600
        assert is_closed(sock, 2)


def test_sr27_preauth_frame_limit(tcp: tuple[TCPServer, int]) -> None:
    """Before authentication a 9 KiB frame is refused; after it, the request limit applies."""
    big = json.dumps({"jsonrpc": "2.0", "method": "add", "params": [1] * 4000, "id": 1}).encode()
    assert 8 * 1024 < len(big) < 1024 * 1024
    with connect(tcp[1]) as sock:
        sock.sendall(encode_frame(big))
        assert recv(sock)["error"]["code"] == -32007
        assert is_closed(sock, 2)
    with session(tcp[1]) as sock:
        sock.sendall(encode_frame(big))
        assert recv(sock)["error"]["code"] == -32602  # parsed and validated: too many params


def test_frame_split_into_single_bytes_and_two_frames_in_one_write(
    tcp: tuple[TCPServer, int],
) -> None:
    """A frame trickled byte by byte, then two frames in one write, all answered."""
    with session(tcp[1]) as sock:
        for byte in encode_frame(json.dumps(ADD).encode()):
            sock.sendall(bytes([byte]))
        assert recv(sock)["result"] == 5
        two = encode_frame(json.dumps({**ADD, "id": 2}).encode()) + encode_frame(
            json.dumps({**ADD, "id": 3}).encode()
        )
        sock.sendall(two)
        assert sorted(recv(sock)["id"] for _ in range(2)) == [2, 3]


def test_sr28_silent_connection_closed_at_auth_deadline(tcp: tuple[TCPServer, int]) -> None:
    """Connect and say nothing: closed at tcp_auth_timeout (1 s)."""
    with connect(tcp[1]) as sock:
        started = time.monotonic()
        assert is_closed(sock, 1.0 + 2.0)
        assert time.monotonic() - started >= 0.8
    assert_serves(tcp[1])


def test_sr28_partial_frame_closed_at_frame_deadline(tcp: tuple[TCPServer, int]) -> None:
    """A header announcing 1000 bytes then 10 bytes: closed at tcp_frame_timeout."""
    with session(tcp[1]) as sock:
        sock.sendall((1000).to_bytes(4, "big") + b"0123456789")
        assert is_closed(sock, 1.0 + 2.0)


def test_sr28_idle_authenticated_connection_closed(tcp: tuple[TCPServer, int]) -> None:
    """An authenticated connection that sends nothing is closed at tcp_idle_timeout (2 s)."""
    with session(tcp[1]) as sock:
        started = time.monotonic()
        assert is_closed(sock, 2.0 + 2.0)
        assert time.monotonic() - started >= 1.5


def test_sr29_client_that_never_reads() -> None:
    """Thousands of calls from a client that never reads: the server stops reading it
    (back-pressure), holds at most the in-flight cap of answers, cuts it off at the write
    deadline, and serves another client meanwhile."""
    from safe_rpc import Limits

    rpc = RPCServer(limits=Limits(write_timeout=1.0, max_inflight_per_connection=4))

    @rpc.method(public=True)
    def blob(size: int, pad: str = "") -> str:
        return "x" * size

    # 20 KB requests: 5000 of them (100 MB) cannot all sit in socket buffers.
    pad = "p" * 20_000
    frame = encode_frame(
        b'{"jsonrpc":"2.0","method":"blob","params":[50000,"%s"],"id":1}' % pad.encode()
    )
    with running_tcp(rpc) as (server, port), connect(port) as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.settimeout(0.5)
        sent = 0
        try:
            for _ in range(5000):
                hog.sendall(frame)
                sent += 1
        except (TimeoutError, OSError):
            pass  # the server stopped reading us: our send buffer filled up
        assert sent < 5000  # the server stopped reading: 100 MB were never accepted
        with connect(port) as other:
            send(other, {"jsonrpc": "2.0", "method": "blob", "params": [3], "id": 2})
            assert recv(other)["result"] == "xxx"
        assert is_closed(hog, 1.0 + 3.0)
        assert server.connections <= 1


def test_connection_cap() -> None:
    """Past max_connections a new connection gets -32009 and is closed."""
    from safe_rpc import Limits

    rpc = RPCServer(limits=Limits(max_connections=2))

    @rpc.method(public=True)
    def ping() -> str:
        return "pong"

    with running_tcp(rpc) as (_, port):
        held = [connect(port), connect(port)]
        time.sleep(0.2)
        with connect(port) as extra:
            assert recv(extra)["error"]["code"] == -32009
        for sock in held:
            sock.close()
        time.sleep(0.2)
        with connect(port) as sock:
            send(sock, {"jsonrpc": "2.0", "method": "ping", "id": 1})
            assert recv(sock)["result"] == "pong"


def test_anonymous_connections_without_keyring() -> None:
    """A server without a keyring takes calls at once (public methods only)."""
    with running_tcp(http_app.public_rpc) as (_, port), connect(port) as sock:
        send(sock, ADD)
        assert recv(sock)["result"] == 5
        send(sock, {"jsonrpc": "2.0", "method": "rpc.authenticate", "params": ["t"], "id": 2})
        assert recv(sock)["error"]["code"] == -32001


def test_sr40_failed_authentications_rate_limited() -> None:
    """After 10 failures from one address, the next attempt gets -32004 without verification."""
    rpc = RPCServer(keyring=Keyring({"k": b"k" * 32}, audience="t"))
    with running_tcp(rpc) as (_, port):
        for _ in range(10):
            with connect(port) as sock:
                assert auth(sock, "bad")["error"]["code"] == -32001
        with connect(port) as sock:
            assert auth(sock, "bad")["error"]["code"] == -32004


def test_tls(tmp_path: Path) -> None:
    """TLS on both ends with a test CA."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with running_tcp(http_app.rpc, tls=server_context) as (_, port):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with client_context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            assert "result" in auth(sock, token())
            send(sock, ADD)
            assert recv(sock)["result"] == 5


def test_json_test_suite_frames_on_one_connection(tcp: tuple[TCPServer, int]) -> None:
    """Every JSONTestSuite file as a frame on one connection: each answered, none fatal."""
    with session(tcp[1]) as sock:
        for path in sorted((JSONTESTSUITE.require() / "test_parsing").iterdir()):
            if not path.stat().st_size:
                continue  # an empty file is a zero-length frame: test_sr27_zero_length_frame
            sock.sendall(encode_frame(path.read_bytes()))
            answer = recv(sock)
            entries = answer if isinstance(answer, list) else [answer]
            codes = {e["error"]["code"] for e in entries}
            assert codes <= {-32700, -32600}, path.name
        send(sock, ADD)
        assert recv(sock)["result"] == 5


def test_serve_cli_with_tcp() -> None:
    """`safe-rpc serve --tcp` serves frames beside HTTP from a real process."""
    with serve("http_app:rpc", "--tcp", "127.0.0.1:0") as running:
        assert running.tcp_port is not None
        with connect(running.tcp_port) as sock:
            assert "result" in auth(sock, token())
            send(sock, ADD)
            assert recv(sock)["result"] == 5
