"""The HTTP transport: a raw ASGI 3 application around ``RPCServer.dispatch_async``.

Everything that can be decided from the request line and headers is decided before a byte
of the body is read (SECURITY.md rows SR-04, SR-22 to SR-26, SR-40): the method,
the content type and encoding, the ``Host`` header, the rate limit, the bearer token, the
declared size and the in-flight cap. The body is then read with a running byte count, so a
chunked body is cut at the limit as well. The JSON-RPC answer is always ``200`` with a JSON
body (or ``204`` when no answer is due), as JSON-RPC over HTTP does; HTTP status codes are
used only for what happens before the JSON-RPC layer.

Nothing from the request is copied into a response header (SR-25), no ``Server`` header is
sent (SR-46), and no CORS header is sent unless origins were allowed explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from .._core.errors import (
    ConfigError,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    RPCError,
    ServerBusy,
    Unauthenticated,
)
from .._core.json import dumps_strict
from .._core.logs import log_safe
from .._core.protocol import error_response
from .._ops.health import Readiness, is_ready, probe_answer
from .._ops.record import incoming_traceparent
from .._ops.tracing import valid_traceparent
from .websocket import WebSocketEndpoint

if TYPE_CHECKING:
    from .._server.server import RPCServer

__all__ = ["ASGIApp", "DEFAULT_HOSTS"]

logger = logging.getLogger("safe_rpc.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Host names a loopback server answers to by default (SR-23: DNS rebinding). A browser
#: tricked into calling 127.0.0.1 under an attacker's name sends that name as Host.
DEFAULT_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

_JSON: Final = (b"content-type", b"application/json")
# Sent with every response: no sniffing a JSON body as HTML, no caching of RPC answers.
_ALWAYS: Final = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
_CLOSE: Final = (b"connection", b"close")


def _error_body(error: RPCError) -> bytes:
    return dumps_strict(error_response(error, None))


_UNAUTHENTICATED: Final = _error_body(Unauthenticated())
_RATE_LIMITED: Final = _error_body(RateLimited())
_TOO_LARGE: Final = _error_body(RequestTooLarge())
_BUSY: Final = _error_body(ServerBusy())
_TIMEOUT: Final = _error_body(RequestTimeout())


class _TooLarge(Exception):
    pass


class ASGIApp:
    """Serve an ``RPCServer`` over HTTP (``rpc.asgi`` builds one with the defaults).

    Example:
        ```python
        import uvicorn
        from examples.calculator import rpc

        uvicorn.run(rpc.asgi, host="127.0.0.1", port=8000)   # or: safe-rpc serve ...
        ```

    Prefer ``safe-rpc serve``: stock uvicorn has no header or body read deadline, and the
    CLI runs the app on an engine that enforces the ``Limits`` deadlines.

    Args:
        rpc: the server to dispatch to.
        allowed_hosts: ``Host`` names accepted (without port); ``"*"`` accepts any. Default:
            the loopback names. Add your public name when you serve beyond loopback.
        cors_origins: origins allowed to call from a browser; none by default, so no CORS
            header is ever sent.
        trusted_proxies: peer addresses whose ``X-Forwarded-For`` names the real client (for
            rate limiting); none by default.
        allowed_origins: when given, a request whose ``Origin`` header is neither in it nor
            in ``cors_origins`` is refused with 403 (requests without ``Origin``, from
            non-browser clients, are unaffected). Default: no ``Origin`` check over HTTP;
            a WebSocket handshake that carries an ``Origin`` is refused with 403 unless it
            is listed here, so by default no web page can open one.
        websocket: serve WebSocket on the same port and path (default on).
        health_path: ``GET`` answers 200 ``ok`` while serving (None turns it off).
        ready_path: ``GET`` answers 200 ``ok`` when ``readiness`` says so and the server is
            not draining, else 503 (None turns it off).
        readiness: a sync or async callable returning True when the service's dependencies
            answer (for example a shared store's ``ping``); default: the server's own
            ``RPCServer(readiness=...)``, else always ready.

    Mounted in another ASGI app, paths are relative to the mount point. The host app's
    lifespan must enter ``lifespan_context()`` (Starlette and FastAPI do not pass lifespan
    events to mounted apps); run on its own, the app handles ``lifespan`` events itself.
    """

    def __init__(
        self,
        rpc: RPCServer,
        *,
        allowed_hosts: Iterable[str] | None = None,
        cors_origins: Iterable[str] = (),
        trusted_proxies: Iterable[str] = (),
        allowed_origins: Iterable[str] | None = None,
        health_path: str | None = "/healthz",
        ready_path: str | None = "/readyz",
        readiness: Readiness | None = None,
        websocket: bool = True,
    ) -> None:
        self.rpc = rpc
        self.limits = rpc.limits
        hosts = DEFAULT_HOSTS if allowed_hosts is None else allowed_hosts
        self.allowed_hosts = frozenset(h.lower() for h in hosts)
        self.cors_origins = frozenset(cors_origins)
        if "*" in self.cors_origins:
            raise ConfigError("cors_origins cannot be '*': list the origins that may call")
        self.trusted_proxies = frozenset(str(ipaddress.ip_address(p)) for p in trusted_proxies)
        self.allowed_origins = (
            None if allowed_origins is None else frozenset(allowed_origins) | self.cors_origins
        )
        self.health_path = health_path
        self.ready_path = ready_path
        self.readiness = readiness
        #: Set when shutdown began (SIGTERM): ``ready_path`` answers 503 from then on.
        self.draining = False
        #: The WebSocket half on the same port and path (None: handshakes are refused).
        self.websocket = (
            WebSocketEndpoint(
                rpc,
                host_allowed=self._host_allowed,
                client_of=self._client,
                allow_origins=self.allowed_origins or (),
            )
            if websocket
            else None
        )

    def lifespan_context(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The server's lifespan, for a host app's own lifespan to enter (FastAPI, Starlette)."""
        return self.rpc.running()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket" and self.websocket is not None:
            await self.websocket(scope, receive, send)
        elif kind == "websocket":  # not served: refuse the handshake
            await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method in ("GET", "HEAD") and await self._probe(scope, send, method == "HEAD"):
            return None
        headers = _headers(scope)
        origin = headers.get(b"origin")
        cors = self._cors(origin)
        if not self._host_allowed(headers.get(b"host")):
            return await _plain(send, 403, b"host not allowed", cors)
        if not self._origin_allowed(origin):
            return await _plain(send, 403, b"origin not allowed", cors)
        if method == "OPTIONS" and cors:
            return await _preflight(send, cors)
        if method != "POST":
            return await _plain(send, 405, b"use POST", [*cors, (b"allow", b"POST")])
        if not _is_json(headers.get(b"content-type")):
            return await _plain(send, 415, b"use Content-Type: application/json", cors)
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding != b"identity":  # SR-24: no decompression bombs
            return await _plain(send, 415, b"Content-Encoding is not supported", cors)

        client = self._client(scope, headers)
        principal = None
        authorization = headers.get(b"authorization")
        if authorization is not None:
            # SR-26: the credential is checked before the body is read; SR-40: a source
            # over its failure budget gets 429 without any verification work.
            limiter = self.rpc.auth_limiter
            if limiter.blocked(client):
                self.rpc.ops.refused("http", client, _RATE_LIMITED, "auth_failures_per_minute")
                return await _json(send, 429, _RATE_LIMITED, cors, close=True)
            try:
                principal = self.rpc.authenticate(_bearer(authorization, self.limits))
            except Unauthenticated:
                limiter.record_failure(client)
                self.rpc.ops.refused("http", client, _UNAUTHENTICATED)
                extra = [*cors, (b"www-authenticate", b"Bearer")]
                return await _json(send, 401, _UNAUTHENTICATED, extra, close=True)

        declared = headers.get(b"content-length")
        if declared is not None and (
            not declared.isdigit() or int(declared) > self.limits.max_request_bytes
        ):
            self.rpc.ops.refused("http", client, _TOO_LARGE, "max_request_bytes")
            return await _json(send, 413, _TOO_LARGE, cors, close=True)  # SR-04
        if self.rpc.inflight >= self.limits.max_inflight:
            self.rpc.ops.refused("http", client, _BUSY, "max_inflight")
            return await _json(send, 503, _BUSY, cors, close=True)  # SR-45

        try:
            async with asyncio.timeout(self.limits.body_timeout):
                body = await self._read_body(receive)
        except _TooLarge:
            self.rpc.ops.refused("http", client, _TOO_LARGE, "max_request_bytes")
            return await _json(send, 413, _TOO_LARGE, cors, close=True)
        except TimeoutError:
            self.rpc.ops.refused("http", client, _TIMEOUT, "body_timeout")
            return await _json(send, 408, _TIMEOUT, cors, close=True)
        if body is None:  # the client went away
            return None
        if self.rpc.ops:  # observers see the caller's trace context (W3C Trace Context)
            incoming_traceparent.set(valid_traceparent(headers.get(b"traceparent")))
        answer = await self.rpc.dispatch_async(
            body, principal=principal, transport="http", client=client
        )
        if answer is None:  # notifications only: JSON-RPC sends nothing
            await send({"type": "http.response.start", "status": 204, "headers": _ALWAYS + cors})
            await send({"type": "http.response.body", "body": b""})
            return None
        return await _json(send, 200, answer, cors)

    async def _probe(self, scope: Scope, send: Send, head: bool) -> bool:
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted: paths are relative to the mount point
            path = path[len(root) :]
        if path == self.health_path:
            status, text = 200, b"ok"
        elif path == self.ready_path:
            if self.draining:
                status, text = 503, b"draining"
            elif await is_ready(self.readiness or self.rpc.readiness):
                status, text = 200, b"ok"
            else:
                status, text = 503, b"not ready"
        else:
            return False
        for message in probe_answer(status, text, head):
            await send(message)
        return True

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # Run on its own (uvicorn, hypercorn): the server's lifespan follows these events.
        await receive()  # lifespan.startup
        try:
            async with self.lifespan_context():
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
                self.draining = True
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _read_body(self, receive: Receive) -> bytes | None:
        limit = self.limits.max_request_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # counted while streaming: chunked bodies too
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _host_allowed(self, host: bytes | None) -> bool:
        if "*" in self.allowed_hosts:
            return True
        if host is None:
            return False
        name = host.decode("latin-1").strip().lower()
        if name.startswith("["):  # [::1]:8000
            name = name.split("]", 1)[0] + "]"
        else:
            name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
        return name in self.allowed_hosts

    def _origin_allowed(self, origin: bytes | None) -> bool:
        if self.allowed_origins is None or origin is None:
            return True
        return origin.decode("latin-1") in self.allowed_origins

    def _client(self, scope: Scope, headers: dict[bytes, bytes]) -> str:
        peer = scope.get("client")
        address = str(peer[0]) if peer else "unknown"
        forwarded = headers.get(b"x-forwarded-for")
        if forwarded and address in self.trusted_proxies:
            # The proxy appends the address it saw: the last entry is the one it vouches for.
            last = forwarded.decode("latin-1").rsplit(",", 1)[-1].strip()
            try:
                return str(ipaddress.ip_address(last))
            except ValueError:
                logger.info("ignoring malformed X-Forwarded-For %s", log_safe(last))
        return address

    def _cors(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        if origin is None or origin.decode("latin-1") not in self.cors_origins:
            return []
        # Only an origin from the allow-list is reflected, never '*' (SR-22).
        return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # Later duplicates of a header are ignored rather than merged: the first one counts.
    out: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        out.setdefault(bytes(name).lower(), bytes(value))
    return out


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media, _, params = content_type.decode("latin-1").partition(";")
    if media.strip().lower() != "application/json":
        return False
    params = params.strip().lower().replace(" ", "")
    return params in ("", "charset=utf-8")  # JSON is UTF-8 (RFC 8259 section 8.1)


def _bearer(header: bytes, limits: Any) -> str:
    # "Authorization: Bearer <token>" (RFC 6750 section 2.1); anything else is a failure.
    if len(header) > limits.max_token_bytes + 16:
        raise Unauthenticated()
    scheme, _, token = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated()
    return token.strip()


async def _json(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]], close: bool = False
) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *_ALWAYS, *extra]
    if close:  # an early answer: the rest of the request is not read, so do not reuse
        headers.append(_CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _plain(send: Send, status: int, text: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(text)).encode()),
        *_ALWAYS,
        *extra,
        _CLOSE,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


async def _preflight(send: Send, cors: list[tuple[bytes, bytes]]) -> None:
    headers = [
        *_ALWAYS,
        *cors,
        (b"access-control-allow-methods", b"POST"),
        (b"access-control-allow-headers", b"authorization, content-type"),
        (b"access-control-max-age", b"600"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
