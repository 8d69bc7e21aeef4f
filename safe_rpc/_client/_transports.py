"""Client transports (the ``Transport`` / ``AsyncTransport`` interface of ``_interface``):
move request bytes out and response bytes back, nothing more.

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
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from .._core.errors import ConfigError, InvalidResponse, TransportError
from .._core.framing import HEADER, encode_frame
from .._core.json import JSONError, dumps_strict
from .._core.limits import CLIENT_JSON
from .._core.protocol import AUTH_METHOD

__all__ = ["AsyncTCPTransport", "TCPTransport", "parse_url"]

_ROUTE_JSON: Final = CLIENT_JSON


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a ``tcp://`` or ``tls://`` URL."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = None
    if not parts.hostname or port is None:
        raise ConfigError(f"{url!r} needs a host and a port, e.g. tcp://127.0.0.1:9000")
    return parts.scheme, parts.hostname, port


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


class _Settings:
    """What every transport is made with (the ``TransportFactory`` signature)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        timeout: float,
        cap: int,
        ssl: ssl_module.SSLContext | None,
    ) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self.cap = cap
        self.ssl = ssl
        self._start()

    def _start(self) -> None:
        """Per-transport set-up, once the settings are stored."""


class _TCPSettings(_Settings):
    """Where and how to connect: shared by the sync and the async TCP transports."""

    def _start(self) -> None:
        scheme, self.host, self.port = parse_url(self.url)
        self.ssl = (self.ssl or ssl_module.create_default_context()) if scheme == "tls" else None

    def _failure(self, exc: BaseException) -> str:
        if isinstance(exc, EOFError | asyncio.IncompleteReadError):
            return "the server closed the connection"
        return _cause(exc, f"{self.host}:{self.port}")


class TCPTransport(_TCPSettings):
    """Sync framed TCP (or TLS): one persistent connection, one message at a time."""

    def _start(self) -> None:
        super()._start()
        self._sock: socket.socket | None = None

    def send(self, data: bytes, *, expect: bool, key: int | None) -> bytes | None:
        # One deadline for the whole call (connect, authenticate, send, the complete answer):
        # every socket operation gets only the time that is left, so a server dripping a
        # byte a second cannot stretch the call.
        deadline = _Deadline(self.timeout)
        try:
            sock = self._sock or self._connect(deadline)
            sock.settimeout(deadline.left())
            sock.sendall(encode_frame(data))
            return self._read_frame(sock, deadline) if expect else None
        except TimeoutError:
            self.close()
            raise TransportError("the call timed out") from None
        except (OSError, EOFError) as exc:
            self.close()
            raise TransportError(self._failure(exc)) from None

    def _connect(self, deadline: _Deadline) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=deadline.left())
        if self.ssl is not None:
            sock.settimeout(deadline.left())
            sock = self.ssl.wrap_socket(sock, server_hostname=self.host)
        self._sock = sock
        if self.token is not None:
            try:
                sock.settimeout(deadline.left())
                sock.sendall(_auth_frame(self.token))
                _check_auth(self._read_frame(sock, deadline))
            except BaseException:
                self.close()  # never keep a connection that did not authenticate
                raise
        return sock

    def _read_frame(self, sock: socket.socket, deadline: _Deadline) -> bytes:
        header = _recv_exactly(sock, HEADER, deadline)
        length = int.from_bytes(header, "big")
        if not 0 < length <= self.cap:  # checked before anything is allocated for it
            self.close()
            raise _not_a_frame(header)
        return _recv_exactly(sock, length, deadline)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class _Deadline:
    __slots__ = ("_at",)

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds until the deadline; TimeoutError once it has passed."""
        left = self._at - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


def _recv_exactly(sock: socket.socket, size: int, deadline: _Deadline) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        sock.settimeout(deadline.left())
        chunk = sock.recv(min(size - len(chunks), 1 << 16))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def _check_auth(raw: bytes) -> None:
    from ._protocol import ClientProtocol

    try:
        answer = CLIENT_JSON.loads(raw)
    except JSONError:
        raise InvalidResponse("authentication answer is not strict JSON") from None
    if type(answer) is dict and "error" in answer:
        raise ClientProtocol(max_response_bytes=len(raw)).rebuild(answer["error"])
    if type(answer) is not dict or type(answer.get("result")) is not dict:
        raise InvalidResponse("unexpected answer to rpc.authenticate")


class AsyncTCPTransport(_TCPSettings):
    """Async framed TCP (or TLS): one persistent connection, concurrent calls matched by id."""

    def _start(self) -> None:
        super()._start()
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
            # The connection may hold half a frame (a dripping server) or a late answer
            # that would match no call: start afresh with the next call.
            if key is not None:
                self._forget(key)
            await self.close()
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
                    writer.close()  # never keep a connection that did not authenticate
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
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
                if self._is_item(raw):
                    continue
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

    def _is_item(self, raw: bytes) -> bool:
        """True when ``raw`` was a subscription item, routed already (``_tcp_streams``)."""
        return False

    def _key_of(self, raw: bytes) -> int | None:
        try:
            value = CLIENT_JSON.loads(raw)
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
        for future in self._pending.values():  # calls still waiting on this connection
            if not future.done():
                future.set_exception(TransportError("the connection was closed"))


def _request_ids(data: bytes) -> list[int]:
    value = CLIENT_JSON.loads(data)  # our own encoding: always valid
    entries = value if type(value) is list else [value]
    return [e["id"] for e in entries if "id" in e]
