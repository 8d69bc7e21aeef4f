"""An ``ASGIApp`` served by uvicorn (our engine settings, WebSocket on) in a background
thread on 127.0.0.1:0, and raw-socket helpers for WebSocket handshakes."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from safe_rpc import RPCServer
from safe_rpc._transports.engine import config_options
from safe_rpc._transports.http import ASGIApp


@contextmanager
def running_app(rpc: RPCServer, **app_options: Any) -> Iterator[tuple[ASGIApp, int]]:
    """Serve ``ASGIApp(rpc, **app_options)``; yield the app and its port."""
    app = ASGIApp(rpc, **app_options)
    options = config_options(rpc.limits)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield app, port
    finally:
        server.should_exit = True
        thread.join(20)


def handshake(
    port: int, headers: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> tuple[int, socket.socket]:
    """Send a raw WebSocket upgrade; return the status and the socket (still open)."""
    key = base64.b64encode(os.urandom(16)).decode()
    head = {
        "Host": host,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
        **(headers or {}),
    }
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = ["GET / HTTP/1.1", *(f"{k}: {v}" for k, v in head.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, sock


def frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    """A masked client frame (RFC 6455 section 5.2)."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def call(method: str, params: Any = None, id: Any = 1) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def fragments(payload: bytes, cuts: list[int]) -> bytes:
    """``payload`` as one text message split into fragments at ``cuts`` (RFC 6455 5.4)."""
    points = sorted({c for c in cuts if 0 < c < len(payload)})
    pieces = [payload[a:b] for a, b in zip([0, *points], [*points, len(payload)], strict=True)]
    out = b""
    for i, piece in enumerate(pieces):
        out += frame(piece, opcode=1 if i == 0 else 0, fin=i == len(pieces) - 1)
    return out


def read_message(sock: socket.socket) -> tuple[int, bytes]:
    """One unfragmented server frame: (opcode, payload)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(exactly(8), "big")
    return first & 0x0F, exactly(length)
