"""Client transports: move request bytes out and response bytes back, nothing more.

Each one enforces the response size cap while reading (a length prefix or Content-Length
is checked before the body is read) and turns every I/O failure and timeout into
``TransportError``. Protocol rules live in ``_protocol``; matching responses to requests
is done there too, except that the async TCP transport must route frames of concurrent
calls to their waiting callers by id first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from .._core.errors import (
    InvalidResponse,
    RateLimited,
    RequestTooLarge,
    RPCError,
    ServerBusy,
    TransportError,
)
from .._core.framing import HEADER, encode_frame
from .._core.json import JSONError, StrictJSON, dumps_strict
from .._core.protocol import AUTH_METHOD

__all__ = ["AsyncHTTPTransport", "AsyncTCPTransport", "HTTPTransport", "TCPTransport", "parse_url"]

#: HTTP statuses whose JSON body is a JSON-RPC answer (errors decided before dispatch).
_JSON_STATUSES: Final = frozenset({200, 401, 408, 413, 429, 503})
_STATUS_ERRORS: Final[dict[int, type[RPCError]]] = {
    413: RequestTooLarge,
    429: RateLimited,
    503: ServerBusy,  # uvicorn's own answer past the connection cap is plain text
}
_ROUTE_JSON: Final = StrictJSON(max_depth=64, max_object_members=10_000, max_array_items=100_000)


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a ``tcp://`` or ``tls://`` URL."""
    parts = urlsplit(url)
    if not parts.hostname or parts.port is None:
        raise ValueError(f"{url!r} needs a host and a port, e.g. tcp://127.0.0.1:9000")
    return parts.scheme, parts.hostname, parts.port


def _cause(exc: BaseException, where: str) -> str:
    """What went wrong, in words a user can act on (the exception chain's root cause)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl_module.SSLCertVerificationError):
            # The reason is OpenSSL's own text about our verification, not the peer's.
            return f"TLS verification failed: {seen.verify_message or seen.reason}"
        if isinstance(seen, ConnectionRefusedError):
            return f"connection refused to {where}"
        if isinstance(seen, socket.gaierror):
            return f"cannot resolve the host of {where}"
        if isinstance(seen, ssl_module.SSLError):
            return f"TLS handshake with {where} failed: {seen.reason or type(seen).__name__}"
        seen = seen.__cause__ or seen.__context__
    return f"connection to {where} failed: {type(exc).__name__}"


def _not_a_frame(header: bytes) -> InvalidResponse:
    if header == b"HTTP":  # an HTTP server's status line read as a length prefix
        return InvalidResponse(
            "the server did not answer with a JSON-RPC frame; is this an HTTP port? "
            "(use an http:// URL for it)"
        )
    return InvalidResponse("response frame larger than max_response_bytes")


def _trace_headers() -> dict[str, str] | None:
    """W3C ``traceparent`` of the caller's current span, when OpenTelemetry is installed."""
    inject = _propagator()
    if inject is None:
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier or None


@functools.cache
def _propagator() -> Callable[[dict[str, str]], None] | None:
    # Looked up on the first request, not at import: loading OpenTelemetry's propagators
    # scans entry points, which `import safe_rpc` should not pay for.
    try:  # the otel extra: propagate the current trace to the server (W3C Trace Context)
        from opentelemetry.propagate import inject
    except ImportError:  # pragma: no cover - the extra is not installed
        return None
    return inject


def _auth_frame(token: str) -> bytes:
    message = {"jsonrpc": "2.0", "method": AUTH_METHOD, "params": {"token": token}, "id": 0}
    return encode_frame(dumps_strict(message))


def _http_answer(response: httpx.Response, body: bytes) -> bytes | None:
    if response.status_code == 204:
        return None
    media = response.headers.get("content-type", "").split(";")[0].strip()
    if response.status_code in _JSON_STATUSES and media == "application/json":
        return body
    # Statuses that mean the same as a library error code get that class (chosen by the
    # status, never by the body); anything else is a transport failure.
    known = _STATUS_ERRORS.get(response.status_code)
    if known is not None:
        raise known()
    raise TransportError(f"the server answered HTTP {response.status_code}")


def _check_length(response: httpx.Response, cap: int) -> None:
    declared = response.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > cap):
        raise InvalidResponse("response larger than max_response_bytes")


def _collect(chunks: Iterator[bytes], cap: int) -> bytes:
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) > cap:
            raise InvalidResponse("response larger than max_response_bytes")
    return bytes(out)


async def _acollect(chunks: AsyncIterator[bytes], cap: int) -> bytes:
    out = bytearray()
    async for chunk in chunks:
        out += chunk
        if len(out) > cap:
            raise InvalidResponse("response larger than max_response_bytes")
    return bytes(out)


def _http_failure(exc: httpx.HTTPError, url: str) -> str:
    if isinstance(exc, httpx.ConnectError):
        parts = urlsplit(url)
        return _cause(
            exc, f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        )
    return f"HTTP transport failed: {type(exc).__name__}"


def _headers(token: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers


class HTTPTransport:
    """Sync HTTP(S) with keep-alive (one ``httpx.Client``)."""

    def __init__(self, url: str, *, token: str | None, timeout: float, cap: int, ssl: Any) -> None:
        self.url = url
        self.cap = cap
        self._client = httpx.Client(
            headers=_headers(token), timeout=timeout, verify=ssl if ssl is not None else True
        )

    def send(self, data: bytes, *, expect: bool, key: int | None) -> bytes | None:
        try:
            with self._client.stream(
                "POST", self.url, content=data, headers=_trace_headers()
            ) as response:
                _check_length(response, self.cap)
                body = _collect(response.iter_bytes(), self.cap)
        except httpx.TimeoutException:
            raise TransportError("the call timed out") from None
        except httpx.HTTPError as exc:
            raise TransportError(_http_failure(exc, self.url)) from None
        return _http_answer(response, body)

    def close(self) -> None:
        self._client.close()


class AsyncHTTPTransport:
    """Async HTTP(S) with keep-alive (one ``httpx.AsyncClient``)."""

    def __init__(self, url: str, *, token: str | None, timeout: float, cap: int, ssl: Any) -> None:
        self.url = url
        self.cap = cap
        self._client = httpx.AsyncClient(
            headers=_headers(token), timeout=timeout, verify=ssl if ssl is not None else True
        )

    async def send(self, data: bytes, *, expect: bool, key: int | None) -> bytes | None:
        try:
            async with self._client.stream(
                "POST", self.url, content=data, headers=_trace_headers()
            ) as response:
                _check_length(response, self.cap)
                body = await _acollect(response.aiter_bytes(), self.cap)
        except httpx.TimeoutException:
            raise TransportError("the call timed out") from None
        except httpx.HTTPError as exc:
            raise TransportError(_http_failure(exc, self.url)) from None
        return _http_answer(response, body)

    async def close(self) -> None:
        await self._client.aclose()


class _TCPSettings:
    """Where and how to connect: shared by the sync and the async TCP transports."""

    def __init__(self, url: str, *, token: str | None, timeout: float, cap: int, ssl: Any) -> None:
        scheme, self.host, self.port = parse_url(url)
        self.token = token
        self.timeout = timeout
        self.cap = cap
        self.ssl = (ssl or ssl_module.create_default_context()) if scheme == "tls" else None

    def _failure(self, exc: BaseException) -> str:
        if isinstance(exc, EOFError | asyncio.IncompleteReadError):
            return "the server closed the connection"
        return _cause(exc, f"{self.host}:{self.port}")


class TCPTransport(_TCPSettings):
    """Sync framed TCP (or TLS): one persistent connection, one message at a time."""

    def __init__(self, url: str, *, token: str | None, timeout: float, cap: int, ssl: Any) -> None:
        super().__init__(url, token=token, timeout=timeout, cap=cap, ssl=ssl)
        self._sock: socket.socket | None = None

    def send(self, data: bytes, *, expect: bool, key: int | None) -> bytes | None:
        try:
            sock = self._sock or self._connect()
            sock.sendall(encode_frame(data))
            return self._read_frame(sock) if expect else None
        except TimeoutError:
            self.close()
            raise TransportError("the call timed out") from None
        except (OSError, EOFError) as exc:
            self.close()
            raise TransportError(self._failure(exc)) from None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.ssl is not None:
            sock = self.ssl.wrap_socket(sock, server_hostname=self.host)
        self._sock = sock
        if self.token is not None:
            sock.sendall(_auth_frame(self.token))
            _check_auth(self._read_frame(sock))
        return sock

    def _read_frame(self, sock: socket.socket) -> bytes:
        header = _recv_exactly(sock, HEADER)
        length = int.from_bytes(header, "big")
        if not 0 < length <= self.cap:  # checked before anything is allocated for it
            self.close()
            raise _not_a_frame(header)
        return _recv_exactly(sock, length)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 16))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def _check_auth(raw: bytes) -> None:
    from ._protocol import ClientProtocol

    try:
        answer = _ROUTE_JSON.loads(raw)
    except JSONError:
        raise InvalidResponse("authentication answer is not strict JSON") from None
    if type(answer) is dict and "error" in answer:
        raise ClientProtocol(max_response_bytes=len(raw)).rebuild(answer["error"])
    if type(answer) is not dict or type(answer.get("result")) is not dict:
        raise InvalidResponse("unexpected answer to rpc.authenticate")


class AsyncTCPTransport(_TCPSettings):
    """Async framed TCP (or TLS): one persistent connection, concurrent calls matched by id."""

    def __init__(self, url: str, *, token: str | None, timeout: float, cap: int, ssl: Any) -> None:
        super().__init__(url, token=token, timeout=timeout, cap=cap, ssl=ssl)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._route: dict[int, int] = {}  # request id -> the key of the message it is in
        self._connecting = asyncio.Lock()
        self._write_lock = asyncio.Lock()

    async def send(self, data: bytes, *, expect: bool, key: int | None) -> bytes | None:
        try:
            async with asyncio.timeout(self.timeout):
                writer = await self._connected()
                future: asyncio.Future[bytes] | None = None
                if expect and key is not None:
                    future = asyncio.get_running_loop().create_future()
                    self._pending[key] = future
                    for request_id in _request_ids(data):
                        self._route[request_id] = key
                async with self._write_lock:
                    writer.write(encode_frame(data))
                    await writer.drain()
                return await future if future is not None else None
        except TimeoutError:
            raise TransportError("the call timed out") from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            await self.close()
            raise TransportError(self._failure(exc)) from None
        finally:
            if key is not None:
                self._forget(key)

    def _forget(self, key: int) -> None:
        self._pending.pop(key, None)
        for request_id in [r for r, k in self._route.items() if k == key]:
            del self._route[request_id]

    async def _connected(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None
            )
            if self.token is not None:
                try:
                    writer.write(_auth_frame(self.token))
                    await writer.drain()
                    _check_auth(await self._read_frame(reader))
                except BaseException:
                    writer.close()  # refused: do not leave the socket to the collector
                    raise
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_loop(reader))
            return writer

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes:
        header = await reader.readexactly(HEADER)
        length = int.from_bytes(header, "big")
        if not 0 < length <= self.cap:
            raise _not_a_frame(header)
        return await reader.readexactly(length)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        failure: Exception = TransportError("the server closed the connection")
        try:
            while True:
                raw = await self._read_frame(reader)
                key = self._key_of(raw)
                future = self._pending.get(key) if key is not None else None
                if future is None:
                    failure = InvalidResponse("a response frame matches no call in flight")
                    break
                if not future.done():
                    future.set_result(raw)
        except InvalidResponse as exc:
            failure = exc
        except (OSError, asyncio.IncompleteReadError, ssl_module.SSLError):
            pass
        for future in self._pending.values():
            if not future.done():
                future.set_exception(failure)
        if self._writer is not None:
            self._writer.close()

    def _key_of(self, raw: bytes) -> int | None:
        try:
            value = _ROUTE_JSON.loads(raw)
        except JSONError:
            value = None
        entries = value if type(value) is list else [value]
        for entry in entries:
            request_id = entry.get("id") if type(entry) is dict else None
            if type(request_id) is int and request_id in self._route:
                return self._route[request_id]
        if len(self._pending) == 1:  # id null (a parse error...) or garbage: the only caller
            return next(iter(self._pending))
        return None

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task
            self._reader_task = None


def _request_ids(data: bytes) -> list[int]:
    value = _ROUTE_JSON.loads(data)  # our own encoding: always valid
    entries = value if type(value) is list else [value]
    return [e["id"] for e in entries if "id" in e]
