"""Running the ASGI app on uvicorn with the deadlines and bounds uvicorn lacks.

Measured on uvicorn 0.54 (SECURITY.md rows SR-17, SR-18): a client that connects and says
nothing, one that trickles its headers and one that stops halfway through its body are all
kept open indefinitely, because uvicorn has no header or body read deadline and resets its
keep-alive timer on every byte. ASGI middleware cannot fix that (the app only sees a
request once its headers are complete), so ``DeadlineH11Protocol`` extends uvicorn's h11
protocol with one request-receipt timer:

* armed with ``Limits.header_timeout`` when the connection opens and after each response,
  and *not* reset by incoming bytes (SR-17);
* re-armed with ``Limits.body_timeout`` once the headers are in and a body is expected
  (SR-18);
* stopped while the app works on a request, also one that was pipelined behind the
  previous answer (``Limits.call_timeout`` governs).

and with one write timer: a response that stops draining (the transport's write buffer over
its high-water mark, so ``pause_writing``) or a closing connection that still holds unsent
bytes is aborted after ``Limits.write_timeout``. Every deadline *aborts*: ``close()`` waits
to flush towards a peer that may never read, and a response task stuck in ``drain()`` would
count against uvicorn's ``limit_concurrency`` for as long as the peer wished.

Connections past ``Limits.max_connections`` get 503 (uvicorn's ``limit_concurrency``,
which counts open connections *and* running request tasks, this one included: SR-19); a
connection from an address that already holds ``Limits.max_connections_per_client`` gets
503 and is closed before it is read (addresses in the app's ``trusted_proxies`` excepted:
a proxy carries many clients). The request head is capped at
``Limits.max_header_bytes``, complete or not (h11 caps only an incomplete head: SR-20), and
``Content-Length`` together with ``Transfer-Encoding`` is refused (RFC 9112 sections 6.1
and 6.3: SR-21); both answers close the connection, so nothing pipelined behind them runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
from typing import Any, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .._core.errors import ServerBusy
from .._core.json import dumps_strict
from .._core.limits import Limits
from .._core.protocol import error_response
from .._ops.gauges import OPEN_CONNECTIONS

__all__ = ["DeadlineH11Protocol", "config_options"]

logger = logging.getLogger("safe_rpc.http")

_BUSY_BODY: Final = dumps_strict(error_response(ServerBusy(), None))
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_BUSY_BODY)
) + _BUSY_BODY
_REFUSALS: Final = {
    400: b"invalid HTTP request",
    431: b"request head too large",
}


class _StrictH11(h11.Connection):
    """h11 plus the request-head checks it leaves to the server.

    ``refusal`` keeps the status h11 (or this class) suggested for the last protocol error,
    because uvicorn answers every ``RemoteProtocolError`` with a plain 400.
    """

    def __init__(self, max_header_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self.max_header_bytes = max_header_bytes
        self.refusal = 400

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = exc.error_status_hint  # 431 for an incomplete head over the cap
            raise
        if isinstance(event, h11.Request):
            names = {bytes(name) for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                # RFC 9112 section 6.3: a server MAY reject it and MUST close afterwards;
                # a front proxy may frame the body the other way (request smuggling).
                self.refusal = 400
                raise h11.RemoteProtocolError("Content-Length with Transfer-Encoding")
            if _head_bytes(event) > self.max_header_bytes:
                self.refusal = 431
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


def _head_bytes(event: h11.Request) -> int:
    # The head as parsed: "METHOD target HTTP/1.1\r\n", "name: value\r\n" each, "\r\n". It can
    # be a little shorter than the bytes sent (optional whitespace is dropped), never longer.
    size = len(event.method) + len(event.target) + 13
    return size + sum(len(name) + len(value) + 4 for name, value in event.headers) + 2


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read and write deadlines (see module docstring)."""

    _deadline: asyncio.TimerHandle | None = None
    _write_deadline: asyncio.TimerHandle | None = None
    _phase = "headers"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = self._limits()
        self.conn = _StrictH11(self.limits.max_header_bytes)

    def _limits(self) -> Limits:
        # The app is our ASGIApp (no uvicorn middleware: proxy headers are off); its
        # limits are the server's. Anything else gets the defaults.
        limits = getattr(self.app, "limits", None)
        return limits if isinstance(limits, Limits) else Limits()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        OPEN_CONNECTIONS["http"] += 1
        # uvicorn's worker processes listen on a socket made without IPPROTO_TCP, so asyncio
        # leaves Nagle on; headers and body go out in two writes and the second waits for a
        # delayed ACK (~40 ms per answer). Small answers must leave at once.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._over_client_cap():
            # debug, not info: a connect flood must not become a log flood
            logger.debug("refusing a connection: its address holds too many already")
            self.transport.write(_BUSY)
            self._close()
            return
        self._arm("headers", self.limits.header_timeout)

    def _over_client_cap(self) -> bool:
        if self.client is None:  # a Unix socket: no address to count
            return False
        address = self.client[0]
        if address in getattr(self.app, "trusted_proxies", ()):
            return False  # a proxy the app trusts carries many clients on its connections
        held = sum(
            1
            for other in self.connections
            if isinstance(other, DeadlineH11Protocol)
            and other.client is not None
            and other.client[0] == address
            and not other.transport.is_closing()
        )
        return held > self.limits.max_connections_per_client

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        # uvicorn starts the next pipelined request here, if one is buffered.
        super().on_response_complete()
        if self.transport.is_closing():
            self._close()
        else:
            self._track(after_response=True)

    def _track(self, *, after_response: bool = False) -> None:
        """Point the request-receipt timer at what the connection is waiting for now."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:  # waiting for (the rest of) a head
            if after_response or self._phase != "headers":
                self._arm("headers", self.limits.header_timeout)
        elif cycle.more_body:
            if self._phase != "body":
                self._arm("body", self.limits.body_timeout)
        elif self._phase != "app":
            self._disarm("app")  # the app is working on a complete request

    def send_400_response(self, msg: str) -> None:
        # uvicorn's version answers 400 to everything and may block in close(): answer the
        # status the parser suggested (431 for an oversized head), then close with a deadline.
        status = self.conn.refusal if isinstance(self.conn, _StrictH11) else 400
        status = status if status in _REFUSALS else 400
        body = _REFUSALS[status]
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        reason = http.HTTPStatus(status).phrase.encode()
        try:
            for event in (
                h11.Response(status_code=status, headers=headers, reason=reason),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
        except h11.LocalProtocolError:  # mid-response: no room for an answer, just cut
            self.transport.abort()
            return
        self._close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm_write()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.transport.is_closing() and self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def timeout_keep_alive_handler(self) -> None:
        # uvicorn closes politely here, which never completes towards a peer that does not
        # read; the idle peer has had its time.
        self._abort("keep-alive")

    def handle_websocket_upgrade(self, event: Any) -> None:
        # The connection now belongs to the WebSocket protocol and its own deadlines; this
        # protocol never sees connection_lost, so it stops counting as an HTTP connection
        # (the WebSocket endpoint counts it from the accepted handshake on).
        self._disarm("upgraded")
        OPEN_CONNECTIONS["http"] -= 1
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm("closed")
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        OPEN_CONNECTIONS["http"] -= 1
        super().connection_lost(exc)

    def _close(self) -> None:
        """Close after flushing, but abort if the flush takes longer than write_timeout."""
        self._disarm("closed")
        self.transport.close()
        self._arm_write()

    def _arm_write(self) -> None:
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(
                self.limits.write_timeout, self._abort, "write"
            )

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm(phase)
        self._deadline = self.loop.call_later(seconds, self._abort, phase)

    def _disarm(self, phase: str) -> None:
        self._phase = phase
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _abort(self, phase: str) -> None:
        self._deadline = self._write_deadline = None
        logger.info("aborting a connection that missed its %s deadline", phase)
        if phase != "write":
            rpc = getattr(self.app, "rpc", None)  # our ASGIApp: count it for the metrics
            if rpc is not None:
                rpc.ops.event("refused", "body_timeout" if phase == "body" else "header_timeout")
        self.transport.abort()


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
        "h11_max_incomplete_event_size": limits.max_header_bytes,  # SR-20
        "access_log": False,
    }
