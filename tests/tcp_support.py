"""A TCPServer running in a background thread, and raw framed-socket helpers."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from safe_rpc import RPCServer
from safe_rpc._core.framing import encode_frame
from safe_rpc._transports.tcp import TCPServer


@contextmanager
def running_tcp(
    rpc: RPCServer, tls: ssl.SSLContext | None = None
) -> Iterator[tuple[TCPServer, int]]:
    """Run ``TCPServer(rpc)`` on 127.0.0.1:0 in a thread; yield it and its port."""
    loop = asyncio.new_event_loop()
    server = TCPServer(rpc, ssl=tls)
    started = threading.Event()
    port: list[int] = []

    async def main() -> None:
        port.append((await server.start("127.0.0.1", 0))[1])
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(main(), loop).result(10)
    try:
        yield server, port[0]
    finally:
        asyncio.run_coroutine_threadsafe(server.close(0.5), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def send(sock: socket.socket, message: Any) -> None:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    sock.sendall(encode_frame(data))


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    out = b""
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def recv(sock: socket.socket) -> Any:
    length = int.from_bytes(recv_exactly(sock, 4), "big")
    return json.loads(recv_exactly(sock, length))


def is_closed(sock: socket.socket, timeout: float) -> bool:
    """True if the server closes the connection within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def auth(sock: socket.socket, token: str) -> Any:
    send(
        sock, {"jsonrpc": "2.0", "method": "rpc.authenticate", "params": {"token": token}, "id": 0}
    )
    return recv(sock)
