"""The HTTP transport against a real ``safe-rpc serve`` process on 127.0.0.1 (issue 4).

Raw sockets wherever an HTTP client library would hide the behaviour. The served app
(tests/apps/http_app.py) has short deadlines: headers 1 s, body 1.5 s, call 1 s.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from corpora import JSONTESTSUITE
from servers import Server, closed_within, connect, exchange, http_request, read_response, serve
from support import check_response
from tokens_support import b64

from safe_rpc import Keyring

ADD = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'
RING = Keyring({"test": b"t" * 32}, audience="tests")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve("http_app:rpc") as running:
        yield running


def assert_serves(server: Server) -> None:
    status, _, body = exchange(server.port, http_request(ADD))
    assert status == 200
    assert json.loads(body)["result"] == 5


def test_call_over_http(server: Server) -> None:
    """A POSTed request gets 200 with the JSON-RPC answer and hardening headers."""
    status, headers, body = exchange(server.port, http_request(ADD))
    assert status == 200
    assert check_response(body)["result"] == 5
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"


def test_sr46_no_server_banner_and_sr22_no_cors_headers(server: Server) -> None:
    """No Server header, and no Access-Control-* header unless CORS is configured."""
    _, headers, _ = exchange(
        server.port, http_request(ADD, headers={"Origin": "https://x.example"})
    )
    assert "server" not in headers
    assert not [h for h in headers if h.startswith("access-control")]


def test_sr17_idle_connection_cut_at_header_deadline(server: Server) -> None:
    """A client that connects and says nothing is closed at the header deadline."""
    with connect(server.port) as idle:
        assert_serves(server)  # others are served meanwhile
        assert closed_within(idle, 1.0 + 2.0) >= 0.5


def test_sr17_trickled_headers_cut_at_header_deadline(server: Server) -> None:
    """Headers sent a byte at a time do not reset the deadline."""
    with connect(server.port) as slow:
        slow.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        try:
            for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaa":
                slow.sendall(bytes([byte]))
                time.sleep(0.2)
                if time.monotonic() - started > 4:
                    break
        except OSError:
            pass  # the server closed the connection while we were still trickling
        assert_serves(server)
        closed_within(slow, 3.0)
        assert time.monotonic() - started < 1.0 + 2.0


def test_sr18_trickled_body_cut_at_body_deadline(server: Server) -> None:
    """Content-Length: 100 then 3 bytes and silence: closed at the body deadline."""
    with connect(server.port) as slow:
        slow.sendall(http_request(b"", headers={"Content-Length": "100"}) + b'{"j')
        started = time.monotonic()
        assert_serves(server)
        try:
            status, _, _ = read_response(slow)
            assert status == 408  # the app's own body deadline may answer first
        except ConnectionError:
            pass
        assert time.monotonic() - started < 1.5 + 2.0


def test_sr04_content_length_over_limit_rejected_before_reading(server: Server) -> None:
    """A 2 MiB Content-Length is answered 413 without the body being sent."""
    with connect(server.port) as sock:
        sock.sendall(http_request(b"", headers={"Content-Length": str(2 * 1024 * 1024)}))
        status, headers, body = read_response(sock)
    assert status == 413
    assert json.loads(body)["error"]["code"] == -32007
    assert headers["connection"] == "close"
    assert_serves(server)


def test_sr04_chunked_body_over_limit_rejected(server: Server) -> None:
    """A chunked body is counted while streaming and cut at the limit with 413."""
    with connect(server.port) as sock:
        sock.sendall(
            http_request(b"", headers={"Content-Length": "", "Transfer-Encoding": "chunked"})
        )
        chunk = b"[" + b"1," * 32767 + b"1]"
        try:
            for _ in range(40):  # 40 x 64 KiB > 1 MiB
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close once it answered
        status, _, body = read_response(sock)
    assert status == 413
    assert json.loads(body)["error"]["code"] == -32007
    assert_serves(server)


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("GET", {}, 405),
        ("PUT", {}, 405),
        ("POST", {"Content-Type": "text/plain"}, 415),
        ("POST", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ("POST", {"Content-Type": "application/json; charset=latin-1"}, 415),
        ("POST", {"Content-Encoding": "gzip"}, 415),
        ("POST", {"Content-Type": "application/octet-stream", "serializer": "pickle"}, 415),
    ],
)
def test_sr22_sr24_sr01_method_type_and_encoding_checked(
    server: Server, method: str, headers: dict[str, str], status: int
) -> None:
    """Only POST of identity-encoded application/json reaches the dispatcher."""
    got, response_headers, _ = exchange(
        server.port, http_request(ADD, method=method, headers=headers)
    )
    assert got == status
    if status == 405:
        assert response_headers["allow"] == "POST"
    assert_serves(server)


@pytest.mark.parametrize("host", ["attacker.example", "127.0.0.1.evil.example", "localhost.evil"])
def test_sr23_foreign_host_header_refused(server: Server, host: str) -> None:
    """A Host outside the allow-list (DNS rebinding) gets 403 and nothing runs."""
    status, _, _ = exchange(server.port, http_request(ADD, host=host))
    assert status == 403
    assert exchange(server.port, http_request(ADD, host=f"localhost:{server.port}"))[0] == 200


def test_sr26_sr33_bad_tokens_identical_401(server: Server) -> None:
    """Every kind of bad token gets the same 401 body with WWW-Authenticate: Bearer."""
    other = Keyring({"test": b"u" * 32}, audience="tests")
    expired_header = b64(b'{"alg":"HS256","typ":"safe-rpc+jwt","kid":"test"}')
    tokens = [
        "garbage",
        other.issue("mallory", ["me"]),
        f"{expired_header}.e30.AAAA",
        Keyring({"nope": b"t" * 32}, audience="tests").issue("x"),
        Keyring({"test": b"t" * 32}, audience="other").issue("x"),
    ]
    answers = set()
    for token in tokens:
        status, headers, body = exchange(
            server.port, http_request(ADD, headers={"Authorization": f"Bearer {token}"})
        )
        assert status == 401
        assert headers["www-authenticate"] == "Bearer"
        answers.add(body)
    assert answers == {
        b'{"jsonrpc":"2.0","error":{"code":-32001,"message":"Unauthenticated"},"id":null}'
    }
    assert_serves(server)


def test_sr26_401_before_the_body_is_sent(server: Server) -> None:
    """A bad token is refused from the headers alone: no body is awaited."""
    with connect(server.port, timeout=3) as sock:
        sock.sendall(
            http_request(b"", headers={"Authorization": "Bearer x", "Content-Length": "1048576"})
        )
        started = time.monotonic()
        status, _, _ = read_response(sock)
    assert status == 401
    assert time.monotonic() - started < 0.9  # well before the 1.5 s body deadline


def test_valid_token_reaches_protected_method(server: Server) -> None:
    """A valid bearer token calls a scoped method; the handler sees the transport."""
    token = RING.issue("alice", ["me"])
    body = b'{"jsonrpc":"2.0","method":"whoami","id":7}'
    status, _, answer = exchange(
        server.port, http_request(body, headers={"Authorization": f"Bearer {token}"})
    )
    assert status == 200
    assert json.loads(answer)["result"] == "alice via http"
    status, _, answer = exchange(server.port, http_request(body))
    assert json.loads(answer)["error"]["code"] == -32001


def test_notification_gets_204(server: Server) -> None:
    """A message that needs no answer gets 204 and an empty body."""
    status, _, body = exchange(
        server.port, http_request(b'{"jsonrpc":"2.0","method":"add","params":[1,2]}')
    )
    assert status == 204
    assert body == b""


def test_sr25_method_name_never_reaches_headers(server: Server) -> None:
    """A method name with CRLF and a header is answered in the body, headers untouched."""
    body = json.dumps({"jsonrpc": "2.0", "method": "x\r\nSet-Cookie: a=b", "id": 1}).encode()
    status, headers, answer = exchange(server.port, http_request(body))
    assert status == 200
    assert "set-cookie" not in headers
    assert json.loads(answer)["error"]["code"] == -32001


def _call(port: int, body: bytes, out: list[tuple[int, bytes]]) -> None:
    status, _, answer = exchange(port, http_request(body))
    out.append((status, answer))


def test_sr45_deadline_cancels_handler(server: Server) -> None:
    """A handler past call_timeout is cancelled and the caller gets -32002."""
    before = json.loads(
        exchange(server.port, http_request(b'{"jsonrpc":"2.0","method":"stats","id":1}'))[2]
    )
    started = time.monotonic()
    status, _, answer = exchange(
        server.port, http_request(b'{"jsonrpc":"2.0","method":"slow","params":[30],"id":1}')
    )
    assert status == 200
    assert json.loads(answer)["error"]["code"] == -32002
    assert time.monotonic() - started < 1.0 + 2.0
    after = json.loads(
        exchange(server.port, http_request(b'{"jsonrpc":"2.0","method":"stats","id":1}'))[2]
    )
    assert after["result"]["cancelled"] == before["result"]["cancelled"] + 1


def test_sr45_inflight_cap_answers_503(server: Server) -> None:
    """Past max_inflight (4) concurrent calls, new requests get 503 with -32009."""
    results: list[tuple[int, bytes]] = []
    slow = b'{"jsonrpc":"2.0","method":"slow","params":[0.8],"id":1}'
    threads = [threading.Thread(target=_call, args=(server.port, slow, results)) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    status, _, body = exchange(server.port, http_request(ADD))
    for thread in threads:
        thread.join()
    assert status == 503
    assert json.loads(body)["error"]["code"] == -32009
    assert [s for s, _ in results] == [200] * 4
    assert_serves(server)


def test_sr19_connection_cap_answers_503(server: Server) -> None:
    """With max_connections (12) held open, a further request gets 503; later it is served."""
    idle = [connect(server.port) for _ in range(12)]
    try:
        status, _, _ = exchange(server.port, http_request(ADD))
        assert status == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    assert_serves(server)


def test_json_test_suite_files_over_one_connection(server: Server) -> None:
    """Every JSONTestSuite file as an HTTP body: a JSON-RPC answer, never a 500 or a drop."""
    sock = connect(server.port)
    try:
        for path in sorted((JSONTESTSUITE.require() / "test_parsing").iterdir()):
            sock.sendall(http_request(path.read_bytes()))
            status, _, body = read_response(sock)
            assert status == 200, path.name
            answer = check_response(body)
            codes = {a["error"]["code"] for a in (answer if isinstance(answer, list) else [answer])}
            assert codes <= {-32700, -32600}, path.name
            if path.name.startswith("n_"):
                assert codes == {-32700}, path.name
    finally:
        sock.close()
    assert_serves(server)


def test_sr40_repeated_bad_tokens_get_429() -> None:
    """The 11th bad token in a minute from one address gets 429; anonymous calls still work."""
    with serve("http_app:rpc") as fresh:
        statuses = [
            exchange(fresh.port, http_request(ADD, headers={"Authorization": "Bearer bad"}))[0]
            for _ in range(11)
        ]
        assert statuses == [401] * 10 + [429]
        good = RING.issue("alice", ["me"])
        status, _, body = exchange(
            fresh.port, http_request(ADD, headers={"Authorization": f"Bearer {good}"})
        )
        assert status == 429  # blocked source: no verification work at all
        assert json.loads(body)["error"]["code"] == -32004
        assert_serves(fresh)


def test_sigterm_drains_in_flight_calls() -> None:
    """On SIGTERM an in-flight call finishes and the process exits cleanly."""
    with serve("http_app:rpc", "--grace", "5") as running:
        results: list[tuple[int, bytes]] = []
        body = b'{"jsonrpc":"2.0","method":"slow","params":[0.7],"id":1}'
        thread = threading.Thread(target=_call, args=(running.port, body, results))
        thread.start()
        time.sleep(0.3)
        running.process.send_signal(signal.SIGTERM)
        thread.join()
        assert results[0][0] == 200
        assert json.loads(results[0][1])["result"] == "done"
        assert running.process.wait(10) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", running.port), timeout=1).close()


def test_sr20_oversized_request_head_refused(server: Server) -> None:
    """A 200 KB header is refused by the engine (h11 caps the request head at 16 KiB)."""
    with connect(server.port) as sock:
        try:
            sock.sendall(http_request(ADD, headers={"X-Big": "a" * 200_000}))
            status, _, _ = read_response(sock)
            assert status in (400, 431)
        except (ConnectionError, OSError):
            pass  # closed without an answer is a refusal too
    assert_serves(server)


def test_sr21_smuggling_shapes_refused(server: Server) -> None:
    """Content-Length together with Transfer-Encoding (with a validly chunked body, so the
    refusal is for the framing itself), or a coding other than chunked: 400 and closed."""
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(ADD), ADD)
    cases = [
        {"Content-Length": str(len(chunked)), "Transfer-Encoding": "chunked"},
        {"Content-Length": "", "Transfer-Encoding": "gzip, chunked"},
    ]
    for extra in cases:
        with connect(server.port) as sock:
            sock.sendall(http_request(b"", headers=extra) + chunked)
            status, headers, _ = read_response(sock)
            assert status == 400, extra
            assert headers["connection"] == "close"
    assert_serves(server)
