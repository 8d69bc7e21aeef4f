"""Clients against hostile fake servers that attack resources (SECURITY.md).

A decompression bomb, a server dripping its answer a byte at a time, error data that does
not fit its class. The fake server treats the first connection as the attack and answers
every later one normally, so each test ends with a normal call that must succeed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fake_servers import ERRORS, InsufficientFunds, MiB, gzip_bomb, loopback_server

from safe_rpc import AsyncClient, Client, InvalidResponse, TransportError
from safe_rpc._core.framing import encode_frame

Attack = Callable[[socket.socket, threading.Event], None]


def _read_http(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(65536)
    return head, body


def _read_frame(conn: socket.socket) -> bytes:
    header = conn.recv(4)
    if len(header) < 4:
        raise ConnectionError
    length = int.from_bytes(header, "big")
    body = b""
    while len(body) < length:
        body += conn.recv(65536)
    return body


def _normal(body: bytes, http: bool) -> bytes:
    answer = json.dumps({"jsonrpc": "2.0", "result": 5, "id": json.loads(body)["id"]}).encode()
    if not http:
        return encode_frame(answer)
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(answer)}"
    return head.encode() + b"\r\n\r\n" + answer


def hostile_server(
    attack: Attack, *, http: bool, heads: list[bytes] | None = None
) -> AbstractContextManager[str]:
    """The first request of the first connection gets ``attack``; every other request is
    answered normally (result 5). Request heads are appended to ``heads``."""

    def handle(conn: socket.socket, number: int, stop: threading.Event) -> None:
        first = number == 0
        conn.settimeout(10)
        while not stop.is_set():
            head, body = _read_http(conn) if http else (b"", _read_frame(conn))
            if heads is not None:
                heads.append(head)
            if first:  # then serve this connection normally, if it is still used
                attack(conn, stop)
                first = False
            else:
                conn.sendall(_normal(body, http))

    return loopback_server(handle, http=http)


def bomb(conn: socket.socket, stop: threading.Event) -> None:
    body = gzip_bomb()
    head = (
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip, gzip\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    conn.sendall(head.encode() + body)


def drip(prefix: bytes, byte: bytes = b" ") -> Attack:
    """Send ``prefix``, then one byte every 0.25 s for as long as the client listens."""

    def attack(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(prefix)
        while not stop.wait(0.25):
            conn.sendall(byte)

    return attack


def test_client_identity_encoding_refuses_decompression_bomb() -> None:
    """Finding 2: `Content-Encoding: gzip, gzip` over 1 GiB of zeros: the client asked for
    identity, refuses the answer at once without inflating it, and stays small in memory
    (sync and async); the next call is served."""
    gzip_bomb()  # built before measuring
    heads: list[bytes] = []
    with hostile_server(bomb, http=True, heads=heads) as url:
        tracemalloc.start()
        try:
            started = time.monotonic()
            with Client(url, timeout=5) as client:
                with pytest.raises(InvalidResponse):
                    client.add(2, 3)
                elapsed = time.monotonic() - started
                _, peak = tracemalloc.get_traced_memory()
                assert client.add(2, 3) == 5
        finally:
            tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 32 * MiB, f"peak {peak / MiB:.0f} MiB"  # before the fix: over 1 GiB
    assert b"accept-encoding: identity" in heads[0].lower()

    async def main(url: str) -> None:
        async with AsyncClient(url, timeout=5) as client:
            with pytest.raises(InvalidResponse):
                await client.add(2, 3)
            assert await client.add(2, 3) == 5

    with hostile_server(bomb, http=True) as url:
        tracemalloc.start()
        try:
            asyncio.run(main(url))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 32 * MiB, f"peak {peak / MiB:.0f} MiB"


_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
DRIPS = {
    "http-body": (True, drip(_HEAD)),
    "http-head": (True, drip(b"HTTP/1.1 200 OK\r\nx-pad: ", b"a")),
    "tcp-body": (False, drip((100).to_bytes(4, "big"))),
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("case", sorted(DRIPS))
def test_client_timeout_is_a_deadline_for_the_whole_call(case: str, mode: str) -> None:
    """Finding 3: a server dripping a byte every 0.25 s never trips a per-read timeout;
    `timeout` must bound the whole call (here 1.5 s) on every transport, sync and async."""
    http, attack = DRIPS[case]
    timeout = 1.5
    with hostile_server(attack, http=http) as url:
        started = time.monotonic()
        if mode == "sync":
            with Client(url, timeout=timeout) as client:
                with pytest.raises(TransportError):
                    client.add(2, 3)
                elapsed = time.monotonic() - started
                assert client.add(2, 3) == 5
        else:

            async def main() -> float:
                async with AsyncClient(url, timeout=timeout) as client:
                    with pytest.raises(TransportError):
                        await client.add(2, 3)
                    spent = time.monotonic() - started
                    assert await client.add(2, 3) == 5
                    return spent

            elapsed = asyncio.run(main())
    assert elapsed < timeout + 2.0, f"the call took {elapsed:.1f} s"


@pytest.mark.parametrize(
    ("data", "fits"),
    [
        ({"balance": "3", "evil": 1}, False),
        ({"balance": 3, "evil": 1}, False),
        ({"balance": "3"}, False),
        ({"balance": True}, False),
        ({"balance": 3}, True),
    ],
)
@pytest.mark.parametrize("http", [True, False])
def test_sr03_error_data_validated_strictly(data: dict[str, Any], fits: bool, http: bool) -> None:
    """Finding 11: error data is validated as strictly as params: a string for an int or an
    unknown member is InvalidResponse (the server broke its contract), never the class."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        error = {"code": 1001, "message": "insufficient funds", "data": data}
        body = json.dumps({"jsonrpc": "2.0", "error": error, "id": 1}).encode()
        if not http:
            conn.sendall(encode_frame(body))
        else:
            head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            conn.sendall(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)

    with hostile_server(answer, http=http) as url, Client(url, errors=ERRORS) as client:
        with pytest.raises((InvalidResponse, InsufficientFunds)) as info:
            client.add(2, 3)
        if fits:
            assert type(info.value) is InsufficientFunds
            assert info.value.data == InsufficientFunds.Data(balance=3)
        else:
            assert type(info.value) is InvalidResponse
        assert client.add(2, 3) == 5
