"""The framed TCP transport: one asyncio server, one task per connection.

Per connection (SECURITY.md rows SR-27 to SR-30, SR-40):

* frames are cut by ``FrameReader`` with the pre-authentication limit (8 KiB) until the
  connection authenticated, the request limit after; a bad header gets one error frame
  and the connection is closed (there is no resynchronising a byte stream);
* with a keyring, the first frame must call ``rpc.authenticate`` with ``{"token": ...}``;
  anything else, or a bad token, gets -32001 and a close after a fixed short delay. The
  principal is re-checked (expiry, revocation) by the dispatcher on every later call, and
  the client may send ``rpc.authenticate`` again to refresh it. Without a keyring the
  connection is anonymous and may call public methods only;
* deadlines: authenticate within ``tcp_auth_timeout`` of connecting, finish a frame within
  ``tcp_frame_timeout`` of its first byte, send something within ``tcp_idle_timeout``;
* at most ``max_inflight_per_connection`` calls run at once; while they all run, the
  connection is not read (back-pressure), and responses are written as calls complete;
* each response write must drain within ``write_timeout``: a peer that never reads holds at
  most that many responses in memory, then is cut off (SR-29).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from typing import TYPE_CHECKING, Any, Final

from .._core.context import Principal
from .._core.errors import (
    InvalidRequest,
    RateLimited,
    RequestTooLarge,
    RPCError,
    ServerBusy,
    Unauthenticated,
)
from .._core.framing import FrameError, FrameReader, encode_frame
from .._core.json import JSONError, dumps_strict
from .._core.limits import AUTH_FRAME_JSON
from .._core.protocol import AUTH_METHOD, Request, classify, error_response
from .._ops.gauges import OPEN_CONNECTIONS

if TYPE_CHECKING:
    from .._server.server import RPCServer

__all__ = ["AUTH_METHOD", "TCPServer"]

logger = logging.getLogger("safe_rpc.tcp")

#: The reserved method a connection authenticates with (JSON-RPC 2.0 section 4 reserves
#: the "rpc." prefix for rpc-internal methods; users cannot register it).
#: Delay before closing after a failed authentication: slows online guessing (SR-30).
AUTH_FAILURE_DELAY: Final = 0.2
_READ_CHUNK: Final = 64 * 1024


def _error_body(error: RPCError, id: Any = None) -> bytes:
    return dumps_strict(error_response(error, id))


def _error_frame(error: RPCError, id: Any = None) -> bytes:
    return encode_frame(_error_body(error, id))


class _Close(Exception):
    """End this connection (after whatever was already written)."""


class TCPServer:
    """Serve an ``RPCServer`` over length-prefixed frames.

    Example:
        ```python
        server = TCPServer(rpc, ssl=context)      # context: ssl.SSLContext or None
        host, port = await server.start("127.0.0.1", 9000)
        ...
        await server.close(grace=10.0)
        ```
    """

    def __init__(self, rpc: RPCServer, *, ssl: ssl_module.SSLContext | None = None) -> None:
        self.rpc = rpc
        self.limits = rpc.limits
        self.ssl = ssl
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0 picks one); returns the bound address."""
        self._server = await asyncio.start_server(
            self._accept, host, port, ssl=self.ssl, limit=_READ_CHUNK
        )
        address = self._server.sockets[0].getsockname()
        return address[0], address[1]

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting; give open connections ``grace`` seconds, then cut them."""
        if self._server is not None:
            self._server.close()
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.limits.max_connections:
            self.rpc.ops.event("refused", "max_connections")
            await self._refuse(writer, ServerBusy())
            return
        self._connections.add(task)
        OPEN_CONNECTIONS["tcp"] += 1
        try:
            await _Connection(self, reader, writer).run()
        finally:
            OPEN_CONNECTIONS["tcp"] -= 1
            self._connections.discard(task)

    async def _refuse(self, writer: asyncio.StreamWriter, error: RPCError) -> None:
        with contextlib.suppress(Exception):
            writer.write(_error_frame(error))
            await asyncio.wait_for(writer.drain(), 1.0)
        writer.close()


class _Connection:
    def __init__(
        self, server: TCPServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.rpc = server.rpc
        self.limits = server.limits
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "unknown"
        self.anonymous = self.rpc.keyring is None
        self.principal: Principal | None = None
        self.frames = FrameReader(
            self.limits.max_request_bytes if self.anonymous else self.limits.tcp_preauth_frame_bytes
        )
        self.slots = asyncio.Semaphore(self.limits.max_inflight_per_connection)
        self.write_lock = asyncio.Lock()
        self.calls: set[asyncio.Task[None]] = set()
        self.broken = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        auth_deadline = loop.time() + self.limits.tcp_auth_timeout
        try:
            while not self.broken:
                frame = await self._next_frame(auth_deadline)
                if frame is None:
                    break
                if self.principal is None and not self.anonymous:
                    await self._authenticate(frame, first=True)
                elif _is_auth_call(frame):
                    await self._authenticate(frame, first=False)
                else:
                    await self.slots.acquire()  # at the cap: stop reading (back-pressure)
                    task = asyncio.create_task(self._call(frame))
                    self.calls.add(task)
                    task.add_done_callback(self.calls.discard)
            if self.calls:
                await asyncio.gather(*self.calls, return_exceptions=True)
        except _Close:
            pass
        except (ConnectionError, asyncio.IncompleteReadError, ssl_module.SSLError) as exc:
            logger.debug("tcp connection from %s ended: %s", self.peer, type(exc).__name__)
        finally:
            for task in self.calls:
                task.cancel()
            self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    async def _next_frame(self, auth_deadline: float) -> bytes | None:
        loop = asyncio.get_running_loop()
        frame_started: float | None = None
        while True:
            try:
                frame = self.frames.next_frame()
            except FrameError as exc:
                error = RequestTooLarge() if exc.too_large else InvalidRequest()
                if exc.too_large:
                    limit = "max_request_bytes" if self.principal or self.anonymous else None
                    limit = limit or "tcp_preauth_frame_bytes"
                    self.rpc.ops.refused("tcp", self.peer, _error_body(error), limit)
                await self._write(_error_frame(error))
                raise _Close from None
            if frame is not None:
                return frame
            now = loop.time()
            if self.frames.buffered and frame_started is None:
                frame_started = now
            # The nearest applicable deadline decides how long this read may wait.
            limits = []
            if self.principal is None and not self.anonymous:
                limits.append(auth_deadline - now)
            if frame_started is not None:
                limits.append(frame_started + self.limits.tcp_frame_timeout - now)
            elif self.calls:  # calls are running: they, not the peer, are what we wait for
                limits.append(max(self.limits.tcp_idle_timeout, self.limits.call_timeout))
            else:
                limits.append(self.limits.tcp_idle_timeout)
            try:
                async with asyncio.timeout(max(0.0, min(limits))):
                    data = await self.reader.read(_READ_CHUNK)
            except TimeoutError:
                logger.info("tcp connection from %s missed a deadline; closing", self.peer)
                raise _Close from None
            if not data:
                return None
            self.frames.feed(data)

    async def _authenticate(self, frame: bytes, *, first: bool) -> None:
        limiter = self.rpc.auth_limiter
        if limiter.blocked(self.peer):
            body = _error_body(RateLimited())
            self.rpc.ops.refused("tcp", self.peer, body, "auth_failures_per_minute")
            await self._write(encode_frame(body))
            raise _Close
        token, request_id = _auth_params(frame)
        try:
            if token is None:
                raise Unauthenticated()
            principal = self.rpc.authenticate(token)
        except Unauthenticated:
            limiter.record_failure(self.peer)
            body = _error_body(Unauthenticated(), request_id)
            self.rpc.ops.refused("tcp", self.peer, body)
            await asyncio.sleep(AUTH_FAILURE_DELAY)
            await self._write(encode_frame(body))
            raise _Close from None
        self.principal = principal
        self.frames.max_frame = self.limits.max_request_bytes
        result = {"subject": principal.subject, "expires_at": principal.expires_at}
        answer = {"jsonrpc": "2.0", "result": result, "id": request_id}
        await self._write(encode_frame(dumps_strict(answer)))

    async def _call(self, frame: bytes) -> None:
        try:
            answer = await self.rpc.dispatch_async(
                frame, principal=self.principal, transport="tcp", client=self.peer
            )
            if answer is not None:
                await self._write(encode_frame(answer))
        except _Close:
            self.broken = True
        finally:
            self.slots.release()

    async def _write(self, data: bytes) -> None:
        async with self.write_lock:
            if self.writer.is_closing():
                raise _Close
            self.writer.write(data)
            try:
                await asyncio.wait_for(self.writer.drain(), self.limits.write_timeout)
            except (TimeoutError, ConnectionError):
                logger.info("tcp peer %s is not reading its responses; closing", self.peer)
                self.rpc.ops.event("refused", "write_timeout")
                self.broken = True
                # abort, not close: close() would wait to flush to a peer that never reads.
                self.writer.transport.abort()
                raise _Close from None


def _is_auth_call(frame: bytes) -> bool:
    # A cheap look before parsing: only frames that can be the reserved call are parsed here.
    return AUTH_METHOD.encode() in frame and _auth_request(frame) is not None


def _auth_request(frame: bytes) -> Request | None:
    try:
        message = AUTH_FRAME_JSON.loads(frame)
    except JSONError:
        return None
    request = classify(message)
    if type(request) is Request and request.method == AUTH_METHOD:
        return request
    return None


def _auth_params(frame: bytes) -> tuple[str | None, Any]:
    """The token and id of an ``rpc.authenticate`` call, or (None, id-or-null)."""
    request = _auth_request(frame)
    if request is None:
        return None, None
    params = request.params
    token = None
    if isinstance(params, dict) and params.keys() == {"token"}:
        token = params["token"]
    elif isinstance(params, list) and len(params) == 1:
        token = params[0]
    request_id = None if request.is_notification else request.id
    return (token if isinstance(token, str) else None), request_id
