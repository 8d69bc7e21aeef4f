"""Clients against hostile fake servers written here (issue 5, SR-03, OWASP API10).

Each fake server reads one request and answers with scripted bytes. The client must never
return a wrong value, hang, or import anything named in a response.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib
import json
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fake_servers import loopback_server

from safe_rpc import AsyncClient, Client, InvalidResponse, RemoteError, TransportError
from safe_rpc._core.framing import encode_frame

Reply = Callable[[bytes], bytes | None]


def fake_server(reply: Reply, *, http: bool) -> AbstractContextManager[str]:
    """Serve scripted answers on 127.0.0.1 until the block ends; yield the URL."""

    def handle(conn: socket.socket, number: int, stop: threading.Event) -> None:
        request = _read_http(conn) if http else _read_frames(conn)
        answer = reply(request)
        if answer is not None:
            conn.sendall(answer)
        stop.wait(1.5)  # keep the connection open (a server that never answers)

    return loopback_server(handle, http=http)


def _read_http(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(65536)
    return body


def _read_frames(conn: socket.socket) -> bytes:
    length = int.from_bytes(conn.recv(4), "big")
    body = b""
    while len(body) < length:
        body += conn.recv(65536)
    return body


def http_answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def answer_with(build: Callable[[Any], Any]) -> tuple[Reply, Reply]:
    """(http reply, tcp reply) answering each request with build(parsed request)."""

    def body(request: bytes) -> bytes:
        value = build(json.loads(request))
        return value if isinstance(value, bytes) else json.dumps(value).encode()

    return (lambda r: http_answer(body(r))), (lambda r: encode_frame(body(r)))


def call_both(replies: tuple[Reply, Reply], run: Callable[[Client], Any]) -> list[BaseException]:
    """Run ``run`` against the HTTP and the TCP fake; return what each raised."""
    raised: list[BaseException] = []
    for reply, http in ((replies[0], True), (replies[1], False)):
        with fake_server(reply, http=http) as url, Client(url, timeout=2) as client:
            try:
                run(client)
            except BaseException as exc:  # collected and asserted on
                raised.append(exc)
            else:
                raise AssertionError(f"no error over {url}")
    return raised


@pytest.mark.parametrize(
    "build",
    [
        lambda req: {"jsonrpc": "2.0", "result": 3, "id": req["id"] + 1},  # wrong id
        lambda req: {"jsonrpc": "2.0", "result": 3},  # missing id
        lambda req: {"jsonrpc": "2.0", "result": 3, "id": str(req["id"])},  # id type
        lambda req: {"jsonrpc": "1.0", "result": 3, "id": req["id"]},
        lambda req: {
            "jsonrpc": "2.0",
            "result": 3,
            "error": {"code": 1, "message": "x"},
            "id": req["id"],
        },
        lambda req: {"jsonrpc": "2.0", "id": req["id"]},
        lambda req: {"jsonrpc": "2.0", "result": 3, "id": req["id"], "extra": 1},
        lambda req: [{"jsonrpc": "2.0", "result": 3, "id": req["id"]}],  # batch for a single
        lambda req: {"jsonrpc": "2.0", "error": {"code": "1", "message": "x"}, "id": req["id"]},
        lambda req: {"jsonrpc": "2.0", "error": "boom", "id": req["id"]},
        lambda req: {"jsonrpc": "2.0", "result": 1, "id": None},
        lambda req: b'{"jsonrpc":"2.0","result":NaN,"id":%d}' % req["id"],
        lambda req: b'{"jsonrpc":"2.0","result":1,"result":2,"id":%d}' % req["id"],
        lambda req: b'{"jsonrpc":"2.0","result":"\\ud800","id":%d}' % req["id"],
        lambda req: b"\xef\xbb\xbf{}",
        lambda req: b"[" * 100_000,
    ],
)
def test_malformed_answers_raise_invalid_response(build: Callable[[Any], Any]) -> None:
    """Wrong, missing or mistyped ids, bad envelopes, NaN, duplicate keys, lone surrogates
    and deep nesting are InvalidResponse, never a returned value."""
    for exc in call_both(answer_with(build), lambda c: c.add(1, 2)):
        assert isinstance(exc, InvalidResponse), repr(exc)


def test_duplicate_ids_in_batch_answer() -> None:
    """A batch answer repeating an id (or missing one) is InvalidResponse."""

    def duplicate(req: Any) -> Any:
        first = req[0]["id"]
        return [{"jsonrpc": "2.0", "result": 1, "id": first}] * 2

    def missing(req: Any) -> Any:
        return [{"jsonrpc": "2.0", "result": 1, "id": req[0]["id"]}]

    def run(client: Client) -> None:
        with client.batch() as b:
            b.add(1, 2)
            b.add(3, 4)

    for build in (duplicate, missing):
        for exc in call_both(answer_with(build), run):
            assert isinstance(exc, InvalidResponse)


def test_sr03_error_data_never_selects_or_imports_a_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error naming a module and class in data becomes RemoteError; nothing is imported."""
    imported: list[str] = []
    real_import = builtins.__import__
    real_import_module = importlib.import_module

    def spy_import(name: str, *args: Any, **kwargs: Any) -> Any:
        imported.append(name)
        return real_import(name, *args, **kwargs)

    def spy_import_module(name: str, *args: Any, **kwargs: Any) -> Any:
        imported.append(name)
        return real_import_module(name, *args, **kwargs)

    evil = {"exc_type": "os.system", "module": "subprocess", "class": "Popen", "args": ["id"]}

    def build(req: Any) -> Any:
        error = {"code": -32000, "message": "subprocess.Popen", "data": evil}
        return {"jsonrpc": "2.0", "error": error, "id": req["id"]}

    replies = answer_with(build)
    monkeypatch.setattr(builtins, "__import__", spy_import)
    monkeypatch.setattr(importlib, "import_module", spy_import_module)
    raised = call_both(replies, lambda c: c.add(1, 2))
    monkeypatch.undo()
    for exc in raised:
        assert type(exc) is RemoteError
        assert exc.code == -32000
        assert exc.data == evil
    assert not [name for name in imported if name in ("os", "subprocess") or "Popen" in name]


def test_known_code_with_invalid_data_is_invalid_response() -> None:
    """A known code whose data fails its Data model is InvalidResponse (the server broke
    the declared contract), never a half-built class."""
    from pydantic import BaseModel

    from safe_rpc import RPCError

    class Typed(RPCError):
        code = 7101
        message = "typed"

        class Data(BaseModel):
            n: int

    def build(req: Any) -> Any:
        return {
            "jsonrpc": "2.0",
            "error": {"code": 7101, "message": "m", "data": {"n": "x"}},
            "id": req["id"],
        }

    for exc in call_both(answer_with(build), lambda c: c.add(1, 2)):
        assert type(exc) is InvalidResponse


def test_oversized_answers_refused_before_reading() -> None:
    """A huge Content-Length or length prefix is refused from the header alone."""

    def http(request: bytes) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9999999\r\n\r\n{"
        )

    def tcp(request: bytes) -> bytes:
        return b"\xff\xff\xff\xf0{"

    for exc in call_both((http, tcp), lambda c: c.add(1, 2)):
        assert isinstance(exc, InvalidResponse)


def test_oversized_streamed_http_answer_cut_at_cap() -> None:
    """A chunked answer larger than max_response_bytes is cut while streaming."""
    chunk = b"x" * 65536

    def reply(request: bytes) -> bytes:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        head += b"transfer-encoding: chunked\r\n\r\n"
        return head + (b"10000\r\n" + chunk + b"\r\n") * 5 + b"0\r\n\r\n"

    with (
        fake_server(reply, http=True) as url,
        Client(url, max_response_bytes=100_000) as client,
        pytest.raises(InvalidResponse),
    ):
        client.add(1, 2)


def test_server_that_never_answers() -> None:
    """Silence is a TransportError at the client's timeout, sync and async."""
    for http in (True, False):
        with fake_server(lambda r: None, http=http) as url:
            with Client(url, timeout=0.3) as client, pytest.raises(TransportError):
                client.add(1, 2)

            async def main(url: str = url) -> None:
                async with AsyncClient(url, timeout=0.3) as client:
                    await client.add(1, 2)

            with pytest.raises(TransportError):
                asyncio.run(main())


def test_unexpected_http_statuses() -> None:
    """Plain-text error statuses become TransportError (or the class the status means)."""
    from safe_rpc import ServerBusy

    def plain(status: str) -> Reply:
        return lambda r: (
            f"HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: 1\r\n\r\nx".encode()
        )

    with (
        fake_server(plain("403 Forbidden"), http=True) as url,
        Client(url) as c,
        pytest.raises(TransportError),
    ):
        c.add(1, 2)
    with (
        fake_server(plain("503 Service Unavailable"), http=True) as url,
        Client(url) as c,
        pytest.raises(ServerBusy),
    ):
        c.add(1, 2)


def test_async_tcp_unmatched_frame_fails_calls() -> None:
    """An async TCP answer whose id matches no call in flight fails that call."""
    _, tcp = answer_with(lambda req: {"jsonrpc": "2.0", "result": 1, "id": 999})

    async def main(url: str) -> None:
        async with AsyncClient(url, timeout=2) as client:
            await client.add(1, 2)

    with fake_server(tcp, http=False) as url, pytest.raises(InvalidResponse):
        asyncio.run(main(url))
