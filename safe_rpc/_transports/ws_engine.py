"""The engine side of WebSocket: uvicorn's sans-I/O ``websockets`` protocol, with the two
things an ASGI app cannot do on its own.

* Know when a message it sent has *drained* (the ASGI ``send`` returns once the bytes are
  in the transport buffer, however full): ``drained()`` waits for the engine's own
  flow-control signal, so the connection core can hold a peer that does not read to
  ``Limits.write_timeout``.
* *Abort* (the ASGI close is a polite close that waits to flush to a peer that may never
  read): ``abort()``. A keepalive ping left unanswered aborts too.

Both reach the app as ``scope["extensions"]["safe_rpc.websocket"]``. The frame limits are
the engine's (the websockets library checks a frame's declared length before buffering
its payload and closes with 1009 past ``max_size``); permessage-deflate is off, so a small
compressed frame cannot inflate into a large message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

from .._core.limits import Limits
from .driver import hard_abort

__all__ = ["EXTENSION", "SafeWebSocketProtocol", "websocket_options"]

EXTENSION = "safe_rpc.websocket"


class SafeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol with ``drained``, ``abort`` and ``on_lost`` for the app."""

    #: Called once when the connection is gone, even while the app is not reading (so its
    #: work can be dropped at once rather than when it next reads or writes).
    on_lost: Callable[[], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        callback, self.on_lost = self.on_lost, None
        if callback is not None:
            callback()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the app task has not run yet: it will see the extension
            scope["extensions"][EXTENSION] = self

    async def send_texts(self, messages: list[bytes]) -> None:
        """Send UTF-8 ``messages`` as text frames with one transport write (the ASGI
        ``websocket.send`` path, minus a decode/encode and a system call per message).

        Raises:
            ClientDisconnected: the connection is gone or closing.
        """
        await self.writable.wait()
        if self.disconnected or self.close_sent or not self.handshake_complete:
            raise ClientDisconnected()
        try:
            for data in messages:
                self.conn.send_text(data)
        except InvalidState:
            raise ClientDisconnected() from None
        self.transport.write(b"".join(self.conn.data_to_send()))

    def limit_messages(self, size: int) -> None:
        """Messages larger than ``size`` close the connection with 1009 from their frame
        headers, before their payload is buffered (the pre-authentication cap)."""
        if hasattr(self.conn, "max_message_size"):  # recent websockets
            self.conn.max_message_size = size
        else:  # older releases kept one attribute (absent from the current type stubs)
            setattr(self.conn, "max_size", size)  # noqa: B010

    async def drained(self) -> None:
        """Return once the transport's buffer is below its low-water mark (or it closed)."""
        await self.writable.wait()

    def abort(self) -> None:
        """Cut the connection now, without flushing."""
        self.stop_keepalive()
        hard_abort(self.transport)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        hard_abort(self.transport)  # the peer is not answering: no polite close towards it


def websocket_options(limits: Limits) -> dict[str, Any]:
    """uvicorn settings for WebSocket under ``limits``."""
    return {
        "ws": SafeWebSocketProtocol,
        "ws_max_size": limits.max_request_bytes,  # close 1009 before buffering more (SR-32)
        "ws_ping_interval": limits.ws_ping_interval,
        "ws_ping_timeout": limits.ws_ping_timeout,
        "ws_per_message_deflate": False,  # no decompression bombs (SR-32)
    }
