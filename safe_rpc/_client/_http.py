"""HTTP client transports (httpcore): one deadline per call, no decompression.

The server is not trusted (SECURITY.md, client rows), so two things httpx would do for us
are not done:

* **No decompression.** Requests say ``Accept-Encoding: identity`` and an answer with any
  other ``Content-Encoding`` is refused (``InvalidResponse``) without inflating a byte:
  1,827 bytes of ``gzip, gzip`` are 1 GiB of zeros, and inflating "in bounded steps under
  the cap" would still spend CPU on a peer that broke the request's terms. The byte cap
  (``max_response_bytes``) then counts exactly the bytes that arrive.
* **The timeout is a deadline for the whole call** (connect, send, the complete answer).
  httpx and httpcore apply their timeouts to each socket operation, so a server dripping a
  byte a second never trips them. Async calls run under ``asyncio.timeout``; sync calls go
  through a network backend whose every connect, read and write is bounded by the time left.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Final
from urllib.parse import urlsplit

import httpcore

from .._core.errors import (
    InvalidResponse,
    RateLimited,
    RequestTooLarge,
    RPCError,
    ServerBusy,
    TransportError,
)
from ._transports import _cause, _trace_headers

__all__ = ["AsyncHTTPTransport", "HTTPTransport"]

#: HTTP statuses whose JSON body is a JSON-RPC answer (errors decided before dispatch).
_JSON_STATUSES: Final = frozenset({200, 401, 408, 413, 429, 503})
_STATUS_ERRORS: Final[dict[int, type[RPCError]]] = {
    413: RequestTooLarge,
    429: RateLimited,
    503: ServerBusy,  # uvicorn's own answer past the connection cap is plain text
}
_FAILURES: Final = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
    httpcore.ConnectionNotAvailable,
    ssl_module.SSLError,
    OSError,
)
_WRITE_PIECE: Final = 64 * 1024
#: The monotonic time the current sync call must end by (one per thread and call).
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "safe_rpc_http_deadline", default=None
)


def _left(timeout: float | None) -> float | None:
    """The socket timeout for the next operation: never past the call's deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # In pieces: each send of a large body is bounded by the time left *now*.
        for start in range(0, len(buffer), _WRITE_PIECE):
            self._inner.write(buffer[start : start + _WRITE_PIECE], _left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl_module.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _left(timeout), local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.connect_unix_socket(path, _left(timeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _request_headers(token: str | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (b"accept-encoding", b"identity")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return headers


def _with_trace(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request headers plus the caller's W3C ``traceparent`` when OpenTelemetry is on."""
    trace = _trace_headers()
    if not trace:
        return headers
    return headers + [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in trace.items()
    ]


def _failure(exc: BaseException, url: str) -> str:
    """A transport failure in words that name its cause (refused, TLS, DNS) and the peer."""
    if isinstance(exc, httpcore.ConnectError | ssl_module.SSLError | ConnectionError):
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return _cause(exc, f"{parts.hostname}:{port}")
    return f"HTTP transport failed: {type(exc).__name__}"


def _timeouts(timeout: float) -> dict[str, Any]:
    return {"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}}


def _check_head(response: httpcore.Response, cap: int) -> None:
    """Refuse a compressed answer and a declared length over the cap, before any body."""
    for name, value in response.headers:
        name = name.lower()
        if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise InvalidResponse(
                "the server sent a compressed answer; safe_rpc asks for and accepts only "
                "Content-Encoding: identity (check the server or a proxy in between)"
            )
        if name == b"content-length" and (not value.isdigit() or int(value) > cap):
            raise InvalidResponse("response larger than max_response_bytes")


def _answer(response: httpcore.Response, body: bytes) -> bytes | None:
    status = response.status
    if status == 204:
        return None
    media = b""
    for name, value in response.headers:
        if name.lower() == b"content-type":
            media = value.split(b";")[0].strip().lower()
    if status in _JSON_STATUSES and media == b"application/json":
        return body
    # Statuses that mean the same as a library error code get that class (chosen by the
    # status, never by the body); anything else is a transport failure.
    known = _STATUS_ERRORS.get(status)
    if known is not None:
        raise known()
    raise TransportError(f"the server answered HTTP {status}")


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


def _ssl_context(url: str, ssl: Any) -> ssl_module.SSLContext | None:
    # Loading the CA store costs milliseconds: only for https, and only once per client.
    if ssl is not None or not url.lower().startswith("https:"):
        return ssl  # type: ignore[no-any-return]
    return ssl_module.create_default_context()


class HTTPTransport:
    """Sync HTTP(S) with keep-alive (one httpcore pool), every call under one deadline."""

    def __init__(self, url: str, *, token: str | None, timeout: float, cap: int, ssl: Any) -> None:
        self.url = url
        self.cap = cap
        self.timeout = timeout
        self._headers = _request_headers(token)
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(url, ssl), network_backend=_DeadlineBackend()
        )

    def send(self, data: bytes, *, expect: bool, key: int | None) -> bytes | None:
        deadline = _DEADLINE.set(time.monotonic() + self.timeout)
        try:
            with self._pool.stream(
                "POST",
                self.url,
                headers=_with_trace(self._headers),
                content=data,
                extensions=_timeouts(self.timeout),
            ) as response:
                _check_head(response, self.cap)
                body = _collect(response.iter_stream(), self.cap)
        except (httpcore.TimeoutException, TimeoutError):
            raise TransportError("the call timed out") from None
        except _FAILURES as exc:
            raise TransportError(_failure(exc, self.url)) from None
        finally:
            _DEADLINE.reset(deadline)
        return _answer(response, body)

    def close(self) -> None:
        self._pool.close()


class AsyncHTTPTransport:
    """Async HTTP(S) with keep-alive (one httpcore pool), every call under one deadline."""

    def __init__(self, url: str, *, token: str | None, timeout: float, cap: int, ssl: Any) -> None:
        self.url = url
        self.cap = cap
        self.timeout = timeout
        self._headers = _request_headers(token)
        self._pool = httpcore.AsyncConnectionPool(ssl_context=_ssl_context(url, ssl))

    async def send(self, data: bytes, *, expect: bool, key: int | None) -> bytes | None:
        try:
            async with (
                asyncio.timeout(self.timeout),
                self._pool.stream(
                    "POST",
                    self.url,
                    headers=_with_trace(self._headers),
                    content=data,
                    extensions=_timeouts(self.timeout),
                ) as response,
            ):
                _check_head(response, self.cap)
                body = await _acollect(response.aiter_stream(), self.cap)
        except (httpcore.TimeoutException, TimeoutError):
            raise TransportError("the call timed out") from None
        except _FAILURES as exc:
            raise TransportError(_failure(exc, self.url)) from None
        return _answer(response, body)

    async def close(self) -> None:
        await self._pool.aclose()
