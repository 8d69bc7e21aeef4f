"""Running the ASGI app on uvicorn with the deadlines uvicorn lacks.

Measured on uvicorn 0.54 (research/security.md section 4): a client that connects and says
nothing, one that trickles its headers and one that stops halfway through its body are all
kept open indefinitely, because uvicorn has no header or body read deadline and resets its
keep-alive timer on every byte. ASGI middleware cannot fix that (the app only sees a
request once its headers are complete), so ``DeadlineH11Protocol`` extends uvicorn's h11
protocol with one request-receipt timer:

* armed with ``Limits.header_timeout`` when the connection opens and after each response,
  and *not* reset by incoming bytes (SR-17);
* re-armed with ``Limits.body_timeout`` once the headers are in and a body is expected
  (SR-18);
* stopped while the app works on a complete request (``Limits.call_timeout`` governs).

When it fires the connection is closed. Header size is capped by h11
(``h11_max_incomplete_event_size``, 16 KiB: SR-20), and connections past
``Limits.max_connections`` get 503 (uvicorn's ``limit_concurrency``: SR-19).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .._core.limits import Limits

__all__ = ["MAX_HEADER_BYTES", "DeadlineH11Protocol", "config_options"]

logger = logging.getLogger("safe_rpc.http")

#: Largest request head (request line + headers) h11 will buffer (SR-20; h11's default).
MAX_HEADER_BYTES = 16 * 1024


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body read deadlines (see module docstring)."""

    _deadline: asyncio.TimerHandle | None = None
    _phase = "headers"

    def _limits(self) -> Limits:
        # The app is our ASGIApp (no uvicorn middleware: proxy headers are off); its
        # limits are the server's. Anything else gets the defaults.
        limits = getattr(self.app, "limits", None)
        return limits if isinstance(limits, Limits) else Limits()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm("headers", self._limits().header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return  # still waiting for (the rest of) a request head: the timer keeps running
        if cycle.more_body:
            if self._phase == "headers":
                self._arm("body", self._limits().body_timeout)
        elif self._phase != "app":
            self._disarm("app")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm("headers", self._limits().header_timeout)

    def handle_websocket_upgrade(self, event: Any) -> None:
        # The connection now belongs to the WebSocket protocol and its own deadlines.
        self._disarm("upgraded")
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm("closed")
        super().connection_lost(exc)

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm(phase)
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self, phase: str) -> None:
        self._phase = phase
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            logger.info("closing a connection that missed its %s deadline", self._phase)
            self.transport.close()


def config_options(limits: Limits, *, websocket: bool = True) -> dict[str, Any]:
    """uvicorn settings shared by the single-process and the multi-worker paths."""
    from .ws_engine import websocket_options

    return {
        "http": DeadlineH11Protocol,
        **(websocket_options(limits) if websocket else {"ws": "none"}),
        "lifespan": "off",
        "server_header": False,  # SR-46: no banner
        "proxy_headers": False,  # X-Forwarded-For is read by the app, from trusted proxies only
        "timeout_keep_alive": max(1, round(limits.keepalive_timeout)),
        "limit_concurrency": limits.max_connections,  # SR-19: 503 past the cap
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,  # SR-20
        "access_log": False,
    }
