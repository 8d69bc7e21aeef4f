"""Edges of the client's TCP transports against hostile loopback servers: a TLS server
reached by the sync transport, a server dripping an answer past the call's deadline,
concurrent async calls answered with an id nobody sent or answered twice, and a connection
closed while a call waits. Every failure is a ``TransportError``/``InvalidResponse``."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from contextlib import AbstractContextManager

import pytest
import trustme
from fake_servers import loopback_server, read_frame

from safe_rpc import InvalidResponse, TransportError
from safe_rpc._client._transports import AsyncTCPTransport, TCPTransport, _cause
from safe_rpc._core.framing import encode_frame

CALL = b'{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}'


def _answer(message: bytes, id: object = None) -> bytes:
    request_id = json.loads(message)["id"] if id is None else id
    return encode_frame(json.dumps({"jsonrpc": "2.0", "result": 3, "id": request_id}).encode())


def test_root_causes_are_named() -> None:
    resolve = OSError("wrapped")
    resolve.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert _cause(resolve, "h:1") == "cannot resolve the host of h:1"
    assert _cause(BrokenPipeError(), "h:1") == "connection to h:1 failed: BrokenPipeError"


def test_sync_transport_over_tls() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    def handle(conn: socket.socket, number: int, stop: threading.Event) -> None:
        with server_context.wrap_socket(conn, server_side=True) as tls:
            while (message := read_frame(tls)) is not None:
                tls.sendall(_answer(message))

    with loopback_server(handle, http=False) as url:
        port = url.rsplit(":", 1)[1]
        transport = TCPTransport(
            f"tls://localhost:{port}", token=None, timeout=5, cap=1 << 20, ssl=client_context
        )
        try:
            answer = transport.send(CALL, expect=True, key=1)
        finally:
            transport.close()
    assert answer is not None
    assert json.loads(answer)["result"] == 3


def test_sync_transport_deadline_covers_a_dripping_answer() -> None:
    """A server sending its answer a byte at a time cannot stretch the call past its
    timeout, though every single read is quick."""

    def drip(conn: socket.socket, number: int, stop: threading.Event) -> None:
        message = read_frame(conn)
        assert message is not None
        for byte in _answer(message):
            if stop.is_set():
                return
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    with loopback_server(drip, http=False) as url:
        transport = TCPTransport(url, token=None, timeout=0.4, cap=1 << 20, ssl=None)
        started = time.monotonic()
        with pytest.raises(TransportError, match="timed out"):
            transport.send(CALL, expect=True, key=1)
        assert time.monotonic() - started < 3
        transport.close()


def _async_server(*, duplicate: bool = False, silent: bool = False) -> AbstractContextManager[str]:
    def handle(conn: socket.socket, number: int, stop: threading.Event) -> None:
        messages = []
        while (message := read_frame(conn)) is not None:
            if silent:
                continue
            messages.append(message)
            if duplicate:
                conn.sendall(_answer(message) * 2)
            elif len(messages) == 2:  # both calls in flight: answer an id neither sent
                conn.sendall(_answer(messages[0], id=999))

    return loopback_server(handle, http=False)


def test_async_frame_matching_no_call_fails_every_call_in_flight() -> None:
    async def main(url: str) -> list[BaseException | bytes | None]:
        transport = AsyncTCPTransport(url, token=None, timeout=5, cap=1 << 20, ssl=None)
        one = b'{"jsonrpc":"2.0","method":"add","id":11}'
        two = b'{"jsonrpc":"2.0","method":"add","id":12}'
        try:
            return list(
                await asyncio.gather(
                    transport.send(one, expect=True, key=11),
                    transport.send(two, expect=True, key=12),
                    return_exceptions=True,
                )
            )
        finally:
            await transport.close()

    with _async_server() as url:
        results = asyncio.run(main(url))
    assert len(results) == 2
    for result in results:
        assert isinstance(result, InvalidResponse)
        assert "matches no call in flight" in str(result)


def test_async_duplicate_answer_is_ignored() -> None:
    async def main(url: str) -> bytes | None:
        transport = AsyncTCPTransport(url, token=None, timeout=5, cap=1 << 20, ssl=None)
        try:
            return await transport.send(CALL, expect=True, key=1)
        finally:
            await transport.close()

    with _async_server(duplicate=True) as url:
        answer = asyncio.run(main(url))
    assert answer is not None
    assert json.loads(answer)["id"] == 1


def test_async_close_fails_the_calls_still_waiting() -> None:
    async def main(url: str) -> BaseException | bytes | None:
        transport = AsyncTCPTransport(url, token=None, timeout=5, cap=1 << 20, ssl=None)
        call = asyncio.create_task(transport.send(CALL, expect=True, key=1))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if transport._pending:
                break
        await transport.close()
        try:
            return await call
        except TransportError as exc:
            return exc

    with _async_server(silent=True) as url:
        outcome = asyncio.run(main(url))
    assert isinstance(outcome, TransportError)
    assert "closed" in str(outcome)
