"""Hostile HTTP peers against a real ``safe-rpc serve`` process (SECURITY.md).

The hostile peer connects from 127.0.0.2, the test's own client from 127.0.0.1, so that the
per-address connection cap can tell them apart. The served app (tests/apps/hostile_app.py)
has deadlines of about a second and a cap of 4 connections per address; every attack is
followed by a normal call that must succeed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from servers import (
    Server,
    connect,
    connect_from,
    drain,
    exchange,
    http_request,
    read_response,
    serve,
)
from support import check_response, request

from safe_rpc import Limits, RPCServer
from safe_rpc._transports.engine import config_options
from safe_rpc._transports.http import ASGIApp

ADD = request("add", [2, 3])
HOSTILE = "127.0.0.2"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve("hostile_app:rpc") as running:
        yield running


def assert_serves(server: Server) -> None:
    status, _, body = exchange(server.port, http_request(ADD))
    assert status == 200
    assert json.loads(body)["result"] == 5


def test_sr29_http_answers_not_drained_are_aborted_at_write_timeout(server: Server) -> None:
    """Finding 1: peers pipelining large answers and never reading, on every connection slot
    but one (3 addresses, 11 connections, max_connections 12), are aborted once their
    answers stop draining (write_timeout 1 s); before the fix the header deadline's polite
    close() never finished and every other client got 503 for as long as the peers wished."""
    size = 1_000_000
    sources = ["127.0.0.2"] * 4 + ["127.0.0.3"] * 4 + ["127.0.0.4"] * 3
    socks = []
    try:
        for source in sources:  # one after the other: each request is admitted
            sock = connect_from(source, server.port, rcvbuf=4096)
            socks.append(sock)
            sock.sendall(http_request(request("huge", [size])) * 8)
            time.sleep(0.05)
        time.sleep(1.0 + 1.0 + 2.0)  # write_timeout, then the header deadline, and slack
        assert_serves(server)  # the slots are free again
        assert drain(socks[0]) < 8 * size  # the rest of the pipeline was never answered
    finally:
        for sock in socks:
            sock.close()
    assert_serves(server)


def test_sr19_connections_per_client_capped(server: Server) -> None:
    """Finding 1: one address holding more than max_connections_per_client (4) gets 503 and
    a closed socket at once, so it cannot take every slot (max_connections 12) from others."""
    held = [connect_from(HOSTILE, server.port) for _ in range(4)]
    excess = [connect_from(HOSTILE, server.port) for _ in range(8)]
    try:
        for sock in excess:
            # Answered before it sent anything (a deadline would close without an answer),
            # and closed.
            status, _, body = read_response(sock)
            assert status == 503
            assert check_response(body)["error"]["code"] == -32009
            assert drain(sock) == 0
        assert_serves(server)  # from 127.0.0.1, while the 4 are held
    finally:
        for sock in held + excess:
            sock.close()
    assert_serves(server)


def test_sr17_pipelined_request_not_cut_while_handled(server: Server) -> None:
    """Finding 10: `add` then a call outlasting header_timeout (1 s), pipelined on one
    connection: the header timer must not run while the second one is handled."""
    with connect(server.port) as sock:
        sock.sendall(http_request(ADD) + http_request(request("slow", [2.0], id=2)))
        first = read_response(sock)
        second = read_response(sock)
    assert first[0] == second[0] == 200
    assert json.loads(first[2])["result"] == 5
    assert json.loads(second[2])["result"] == "done"
    assert_serves(server)


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def test_sr21_content_length_with_transfer_encoding_refused(server: Server) -> None:
    """Finding 6: Content-Length: 4 with Transfer-Encoding: chunked and a valid chunked
    body, then a second request on the same socket: 400, closed, the second never answered
    (RFC 9112 sections 6.1, 6.3)."""
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with connect_from(HOSTILE, server.port) as sock:
        sock.sendall(head + _chunked(ADD) + http_request(ADD))
        status, headers, _ = read_response(sock)
        assert status == 400
        assert headers["connection"] == "close"
        assert drain(sock, timeout=2.0) == 0  # no answer to the smuggled second request
    assert_serves(server)


@pytest.mark.parametrize("size", [17 * 1024, 64 * 1024, 200_000])
def test_sr20_request_head_over_max_header_bytes_gets_431(server: Server, size: int) -> None:
    """Finding 7: one header making the head larger than max_header_bytes (16 KiB), sent in
    one write, complete or not, gets 431 (h11 alone capped only an incomplete head)."""
    with connect_from(HOSTILE, server.port) as sock:
        sock.sendall(http_request(ADD, headers={"X-Big": "a" * size}))
        status, _, _ = read_response(sock)
        assert status == 431
    assert_serves(server)


def test_sr20_head_just_under_max_header_bytes_served(server: Server) -> None:
    """A head just under the cap is served: the cap counts the head, not more."""
    status, _, body = exchange(server.port, http_request(ADD, headers={"X-Big": "a" * 15_000}))
    assert status == 200
    assert json.loads(body)["result"] == 5


@pytest.mark.parametrize(
    "params",
    [
        [{"x": 1, "y": 2, "__class__": "os.system"}],
        {"p": {"x": 1, "y": 2, "extra": 1}},
    ],
)
def test_sr16_unknown_member_in_nested_model_refused(server: Server, params: object) -> None:
    """Finding 8: an unknown member inside a nested BaseModel (which did not forbid extra
    itself) is -32602, not silently dropped."""
    status, _, body = exchange(server.port, http_request(request("norm", params)))
    assert status == 200
    error = check_response(body)["error"]
    assert error["code"] == -32602
    assert error["data"][0]["type"] == "extra_forbidden"
    assert "os.system" not in body.decode()  # nothing the peer sent is echoed
    assert_serves(server)


@pytest.mark.parametrize("where", ["shape", "corner", "size", "tag"])
def test_sr16_unknown_member_refused_at_every_depth(server: Server, where: str) -> None:
    """Finding 8: nested model in a model, dataclass, TypedDict in a list: all -32602."""
    corner: dict[str, Any] = {"x": 1, "y": 2}
    shape: dict[str, Any] = {"corner": corner}
    size: dict[str, Any] = {"w": 3}
    tag: dict[str, Any] = {"name": "a"}
    params = {"shape": shape, "size": size, "tags": [tag]}
    status, _, body = exchange(server.port, http_request(request("nested", params)))
    assert json.loads(body)["result"] == 5
    {"shape": shape, "corner": corner, "size": size, "tag": tag}[where]["evil"] = 1
    status, _, body = exchange(server.port, http_request(request("nested", params)))
    assert status == 200
    assert check_response(body)["error"]["code"] == -32602
    assert_serves(server)


def test_sr19_refused_connections_do_not_linger(server: Server) -> None:
    """The per-address refusals free their slots: after them, 4 new connections from the
    same address are accepted and served."""
    for _ in range(3):
        socks = [connect_from(HOSTILE, server.port) for _ in range(6)]
        for sock in socks:
            sock.close()
    time.sleep(0.3)
    socks = [connect_from(HOSTILE, server.port) for _ in range(4)]
    try:
        for sock in socks:
            sock.sendall(http_request(ADD))
            status, _, _ = read_response(sock)
            assert status == 200
    finally:
        for sock in socks:
            sock.close()
    assert_serves(server)


@contextmanager
def in_process(app: ASGIApp) -> Iterator[int]:
    """The app on the serving engine (uvicorn + config_options) in a thread: its port."""
    options = config_options(app.limits)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the in-process server did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def test_sr19_trusted_proxy_not_capped_per_address() -> None:
    """A proxy the app trusts carries many clients: its connections are not capped per
    address (127.0.0.2, 8 > 4 served); any other address still is (127.0.0.3)."""
    rpc = RPCServer(limits=Limits(max_connections_per_client=4, header_timeout=5.0))
    rpc.method(name="add", public=True)(_add)
    with in_process(ASGIApp(rpc, trusted_proxies=["127.0.0.2"])) as port:
        proxied = [connect_from("127.0.0.2", port) for _ in range(8)]
        others = [connect_from("127.0.0.3", port) for _ in range(5)]
        try:
            for sock in proxied:
                sock.sendall(http_request(ADD))
                assert read_response(sock)[0] == 200
            assert read_response(others[4])[0] == 503
        finally:
            for sock in proxied + others:
                sock.close()
        status, _, body = exchange(port, http_request(ADD))
        assert (status, json.loads(body)["result"]) == (200, 5)


def _add(a: int, b: int) -> int:
    return a + b


def test_sr17_idle_deadlines_abort_a_peer_that_does_not_read() -> None:
    """Finding 1: with write_timeout long (30 s), the header and keep-alive deadlines (1 s)
    must abort a connection whose answer the peer never reads; a polite close() waits for
    the flush forever, and the connection kept its slot (max_connections 2: 503 for all)."""
    size = 12_000_000  # more than the kernel's socket buffers take (4 MiB at most here)
    limits = Limits(
        header_timeout=1.0,
        keepalive_timeout=1.0,
        write_timeout=30.0,
        max_connections=2,
        max_response_bytes=16 * 1024 * 1024,
    )
    rpc = RPCServer(limits=limits)
    rpc.method(name="add", public=True)(_add)
    rpc.method(name="huge", public=True)(_huge)
    with in_process(ASGIApp(rpc)) as port, connect_from(HOSTILE, port, rcvbuf=4096) as sock:
        sock.sendall(http_request(request("huge", [size])))
        time.sleep(1.0 + 2.0)
        status, _, body = exchange(port, http_request(ADD))
        assert status == 200  # the slot is free again (before the fix: 503)
        assert json.loads(body)["result"] == 5
        assert drain(sock) < size  # the answer was dropped, not delivered late


def _huge(size: int) -> str:
    return "x" * size
