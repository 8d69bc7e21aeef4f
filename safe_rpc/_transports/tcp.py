"""The framed TCP transport: one asyncio server, one task per connection.

Per connection (SECURITY.md rows SR-27 to SR-30, SR-40):

* frames are cut by ``FrameReader`` with the pre-authentication limit (8 KiB) until the
  connection authenticated, the request limit after; a bad header gets one error frame
  and the connection is closed (there is no resynchronising a byte stream);
* a frame must complete within ``tcp_frame_timeout`` of its first byte.

Everything else is the connection core's (``connection.py``), shared with WebSocket:
authenticate first with ``rpc.authenticate`` (a bad token: -32001 and a close after a
fixed short delay; as a notification: no answer), the principal re-checked on every call,
the auth and idle deadlines, the in-flight cap and the pending-bytes bounds (the
connection is not read while either is reached), the write deadline (a peer that does not
drain its answers within ``write_timeout`` is aborted, SR-29), and subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from typing import TYPE_CHECKING, Final

from .._core.errors import InvalidRequest, RequestTooLarge, RPCError, ServerBusy
from .._core.framing import FrameError, FrameReader, encode_frame
from .._core.json import dumps_strict
from .._core.protocol import AUTH_METHOD, error_response
from .._ops.gauges import OPEN_CONNECTIONS
from .connection import ConnectionCore
from .driver import ConnectionDriver, hard_abort

if TYPE_CHECKING:
    from .._server.server import RPCServer

__all__ = ["AUTH_METHOD", "TCPServer"]

logger = logging.getLogger("safe_rpc.tcp")

_READ_CHUNK: Final = 64 * 1024


def _error_frame(error: RPCError) -> bytes:
    return encode_frame(dumps_strict(error_response(error, None)))


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
            writer.transport.abort()  # idempotent; close() already ran on a clean end

    async def _refuse(self, writer: asyncio.StreamWriter, error: RPCError) -> None:
        with contextlib.suppress(Exception):
            writer.write(_error_frame(error))
            await asyncio.wait_for(writer.drain(), 1.0)
        writer.close()


class _Connection(ConnectionDriver):
    """One framed connection: frames in, frames out, everything else in the core."""

    transport_name = "tcp"

    def __init__(
        self, server: TCPServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        loop = asyncio.get_running_loop()
        core = ConnectionCore(
            server.rpc,
            server.rpc.pending_budget,
            peer=str(peer[0]) if peer else "unknown",
            now=loop.time(),
        )
        super().__init__(server.rpc, core)
        self.limits = server.limits
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader(core.max_message)

    async def _receive(self) -> bytes | None:
        frame_started: float | None = None
        while True:
            self.frames.max_frame = self.core.max_message  # raised once authenticated
            try:
                frame = self.frames.next_frame()
            except FrameError as exc:
                # No resynchronising a byte stream: one error frame, then close.
                limit = "tcp_preauth_frame_bytes" if not self.core.authenticated else None
                limit = (limit or "max_request_bytes") if exc.too_large else None
                self.core.refuse(RequestTooLarge() if exc.too_large else InvalidRequest(), limit)
                self._apply()
                return None
            if frame is not None:
                return frame
            if self.frames.buffered and frame_started is None:
                frame_started = self._now()
            try:
                if frame_started is None:  # between frames: the core's deadlines govern
                    data = await self.reader.read(_READ_CHUNK)
                else:
                    remaining = frame_started + self.limits.tcp_frame_timeout - self._now()
                    async with asyncio.timeout(max(0.0, remaining)):
                        data = await self.reader.read(_READ_CHUNK)
            except TimeoutError:
                logger.info("tcp connection from %s missed a deadline; closing", self.core.peer)
                self.core.refuse(None, "tcp_frame_timeout")
                self._apply()
                return None
            if not data:
                return None
            self.frames.feed(data)

    async def _watch(self) -> None:
        # Completes when the transport is lost (a reset, or our own close), even while the
        # reader is paused at a cap: the work of a connection that is gone is dropped now.
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self.core.gone()
        self._done.set()

    async def _send(self, data: bytes) -> None:
        await self._send_many([data])

    async def _send_many(self, batch: list[bytes]) -> None:
        if self.writer.is_closing():
            raise ConnectionError("closed")
        self.writer.write(b"".join(encode_frame(data) for data in batch))
        await self.writer.drain()

    def _abort_transport(self) -> None:
        # abort, not close: close() would wait to flush to a peer that never reads.
        hard_abort(self.writer.transport)

    async def _close_transport(self, code: int) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
