"""WebSocket on the HTTP app's own port and path (``ws://``, ``wss://``).

Before the handshake is accepted (SECURITY.md, WebSocket rows; RFC 6455 sections 4.2 and
10.2): the ``Host`` allow-list (DNS rebinding), the ``Origin`` allow-list (empty by
default: a browser always sends ``Origin``, so no web page can open a connection with the
user's ambient network position unless its origin was allowed: cross-site WebSocket
hijacking), the connection caps (total and per peer address), the failed-authentication
limiter and the bearer token in ``Authorization``. A refused handshake is an HTTP answer
(403, 401, 429, 503), never an accepted socket.

After it, each text message is one JSON-RPC message through the connection core shared
with framed TCP (``connection.py``): authenticate first when no token came with the
handshake (pre-auth cap and deadline as on TCP), the in-flight cap, the principal
re-checked on every call and item, bounded pending bytes, write and idle deadlines, and
subscriptions. A binary message closes with 1003; the engine closes a message over
``max_request_bytes`` with 1009 before buffering it, and answers keepalive pings.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from .._core.context import Principal
from .._core.errors import RateLimited, RPCError, ServerBusy, Unauthenticated
from .._core.json import dumps_strict
from .._core.protocol import error_response
from .._ops.gauges import OPEN_CONNECTIONS
from .._ops.record import incoming_traceparent
from .._ops.tracing import valid_traceparent
from .connection import ConnectionCore
from .driver import ConnectionDriver

if TYPE_CHECKING:
    from .._server.server import RPCServer

__all__ = ["WebSocketEndpoint"]

logger = logging.getLogger("safe_rpc.websocket")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_EXTENSION: Final = "safe_rpc.websocket"  # ws_engine.EXTENSION, without importing uvicorn
_UNSUPPORTED_DATA: Final = 1003  # RFC 6455 section 7.4.1


class _Denied(Exception):
    def __init__(
        self, status: int, body: bytes, json: bool = True, limit: str | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.json = json
        self.limit = limit  # the Limits field that refused (None: the credential failed)


def _deny(status: int, error: RPCError, limit: str | None = None) -> _Denied:
    return _Denied(status, dumps_strict(error_response(error, None)), limit=limit)


class WebSocketEndpoint:
    """The WebSocket half of ``ASGIApp`` (it hands ``websocket`` scopes here).

    Args:
        rpc: the server.
        host_allowed: the HTTP app's Host check.
        client_of: the HTTP app's peer-address rule (trusted proxies).
        allow_origins: the ``Origin`` values a handshake may carry (exact match, for
            example ``"https://app.example.com"``); empty: any handshake with an
            ``Origin`` is refused with 403.
    """

    def __init__(
        self,
        rpc: RPCServer,
        *,
        host_allowed: Callable[[bytes | None], bool],
        client_of: Callable[[Scope, dict[bytes, bytes]], str],
        allow_origins: Iterable[str] = (),
    ) -> None:
        self.rpc = rpc
        self.limits = rpc.limits
        self.host_allowed = host_allowed
        self.client_of = client_of
        self.allow_origins = frozenset(allow_origins)
        if "*" in self.allow_origins or "null" in self.allow_origins:
            raise ValueError("allow_origins lists exact origins; '*' and 'null' are refused")
        self._open: Counter[str] = Counter()

    @property
    def connections(self) -> int:
        return sum(self._open.values())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        headers = _headers(scope)
        client = self.client_of(scope, headers)
        try:
            principal = self._admit(headers, client)
        except _Denied as denied:
            if denied.json:  # a limit or the credential (Host and Origin are not counted)
                self.rpc.ops.refused("websocket", client, denied.body, denied.limit)
            await _refuse(scope, send, denied)
            return
        extension = scope.get("extensions", {}).get(_EXTENSION)
        if self.rpc.ops:  # every call on the connection continues the handshake's trace
            incoming_traceparent.set(valid_traceparent(headers.get(b"traceparent")))
        self._open[client] += 1
        OPEN_CONNECTIONS["websocket"] += 1
        try:
            await send({"type": "websocket.accept"})
            core = ConnectionCore(
                self.rpc,
                self.rpc.pending_budget,
                peer=client,
                now=_loop_time(),
                principal=principal,
                keepalive=extension is not None and self.limits.ws_ping_interval > 0,
                transport="websocket",
            )
            await _WebSocket(self.rpc, core, receive, send, extension).run()
        finally:
            OPEN_CONNECTIONS["websocket"] -= 1
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]

    def _admit(self, headers: dict[bytes, bytes], client: str) -> Principal | None:
        if not self.host_allowed(headers.get(b"host")):
            raise _Denied(403, b"host not allowed", json=False)
        origin = headers.get(b"origin")
        if origin is not None and origin.decode("latin-1") not in self.allow_origins:
            logger.info("websocket handshake from a page of a foreign origin refused")
            raise _Denied(403, b"origin not allowed", json=False)
        limits = self.limits
        if self.connections >= limits.max_connections:
            raise _deny(503, ServerBusy(), "max_connections")
        if self._open[client] >= limits.max_connections_per_client:
            raise _deny(503, ServerBusy(), "max_connections_per_client")
        authorization = headers.get(b"authorization")
        if authorization is None:
            return None  # the first message must be rpc.authenticate (when there is a keyring)
        limiter = self.rpc.auth_limiter
        if limiter.blocked(client):
            raise _deny(429, RateLimited(), "auth_failures_per_minute")
        try:
            return self.rpc.authenticate(_bearer(authorization, limits.max_token_bytes))
        except Unauthenticated:
            limiter.record_failure(client)
            raise _deny(401, Unauthenticated()) from None


class _WebSocket(ConnectionDriver):
    transport_name = "websocket"
    eof_is_gone = True  # a WebSocket disconnect is the end: its work is dropped

    def __init__(
        self, rpc: RPCServer, core: ConnectionCore, receive: Receive, send: Send, engine: Any
    ) -> None:
        super().__init__(rpc, core)
        self.asgi_receive = receive
        self.asgi_send = send
        self.engine = engine
        self._limit = rpc.limits.max_request_bytes  # what the engine was configured with
        if engine is not None:
            engine.on_lost = self._lost
            self._limit_messages()

    def _limit_messages(self) -> None:
        # The engine enforces the current cap (8 KiB until authenticated) on frame headers,
        # so an unauthenticated peer cannot make us buffer a 1 MiB message.
        if self.engine is not None and self.core.max_message != self._limit:
            self._limit = self.core.max_message
            self.engine.limit_messages(self._limit)

    def _lost(self) -> None:
        # The peer is gone: drop its work now, even if the reader is paused at a cap.
        self.core.gone()
        self._done.set()

    async def _receive(self) -> bytes | None:
        self._limit_messages()
        message = await self.asgi_receive()
        if message["type"] != "websocket.receive":
            return None  # websocket.disconnect
        text = message.get("text")
        if text is None:  # JSON-RPC messages are text; binary is refused, not guessed at
            await self.asgi_send({"type": "websocket.close", "code": _UNSUPPORTED_DATA})
            return None
        return str(text).encode("utf-8", "surrogatepass")

    async def _send(self, data: bytes) -> None:
        await self._send_many([data])

    async def _send_many(self, batch: list[bytes]) -> None:
        if self.engine is None:  # another engine: plain ASGI, one message at a time
            for data in batch:
                await self.asgi_send({"type": "websocket.send", "text": data.decode()})
            return
        await self.engine.send_texts(batch)
        await self.engine.drained()

    def _abort_transport(self) -> None:
        if self.engine is not None:
            self.engine.abort()

    async def _close_transport(self, code: int) -> None:
        await self.asgi_send({"type": "websocket.close", "code": code})


def _loop_time() -> float:
    import asyncio

    return asyncio.get_running_loop().time()


def _headers(scope: Scope) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        out.setdefault(bytes(name).lower(), bytes(value))
    return out


def _bearer(header: bytes, max_token_bytes: int) -> str:
    # "Authorization: Bearer <token>" (RFC 6750 section 2.1); anything else is a failure.
    if len(header) > max_token_bytes + 16:
        raise Unauthenticated()
    scheme, _, token = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated()
    return token.strip()


async def _refuse(scope: Scope, send: Send, denied: _Denied) -> None:
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})  # the engine answers 403
        return
    kind = b"application/json" if denied.json else b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(denied.body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
    ]
    if denied.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send(
        {"type": "websocket.http.response.start", "status": denied.status, "headers": headers}
    )
    await send({"type": "websocket.http.response.body", "body": denied.body})
