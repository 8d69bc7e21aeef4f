"""The deadline protocol (safe_rpc._transports.engine) where the HTTP tests do not go: a
Unix socket (no client address to count against the per-address cap, no TCP_NODELAY) and
a header deadline enforced for an app that is not safe_rpc's (nothing to count it in)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from audit_support import calculator, running_asgi

from safe_rpc import Limits
from safe_rpc._transports.engine import config_options
from safe_rpc._transports.http import ASGIApp

CALL = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'


def _post(sock: socket.socket) -> bytes:
    head = (
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(CALL)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + CALL)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_rpc_over_a_unix_socket(tmp_path: Path) -> None:
    rpc = calculator(limits=Limits(max_connections_per_client=1))
    path = tmp_path / "rpc.sock"
    with running_asgi(ASGIApp(rpc), **config_options(rpc.limits), uds=str(path)):
        for _ in range(2):  # the per-address cap does not apply: a Unix peer has no address
            with socket.socket(socket.AF_UNIX) as held, socket.socket(socket.AF_UNIX) as sock:
                held.connect(str(path))  # holds the one connection a TCP address would get
                sock.settimeout(5)
                sock.connect(str(path))
                answer = _post(sock)
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert answer.endswith(b'"result":5,"id":1}')


class PlainApp:
    """An ASGI app that is not safe_rpc's but carries Limits (as a wrapper of ours may)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_header_deadline_for_an_app_that_is_not_safe_rpcs() -> None:
    limits = Limits(header_timeout=0.3)
    with running_asgi(PlainApp(limits), **config_options(limits)) as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\n")  # and never the rest
            started = time.monotonic()
            assert sock.recv(65536) in (b"", b"HTTP/1.1 408 Request Timeout")  # cut
            assert time.monotonic() - started < 4
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 204 ")  # still serving
