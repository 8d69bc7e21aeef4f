"""How the audit reaches its one target: pluggable transports that move raw bytes.

The library's client refuses whatever a hostile or broken server sends, which is right for
a client and wrong for an auditor: here every transport hands back what came (or that
nothing came, or that the connection closed) and the checks judge it. Each one calls
``Budget.take()`` before every message, so the request count and rate hold for all checks.

* ``http``/``https``: one HTTP/1.1 POST per message on a fresh connection (h11 as the
  client state machine), ``Connection: close``; 204, or 200/202 with an empty body, is
  "no answer".
* ``tcp``/``tls``: safe_rpc's framing (4-byte big-endian length, then the JSON), one
  persistent connection, ``rpc.authenticate`` first when a token is given.
* ``ws``/``wss``: one text message per JSON-RPC message (binary when the probe is not
  UTF-8), with the ``websockets`` client when it is installed.

On the stream transports a notification's "no answer" is seen by sending a marker request
(a method that cannot exist) right after it: whatever arrives before the marker's answer
was an answer to the notification.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import h11

from .._core.framing import encode_frame
from .._core.json import JSONError, StrictJSON
from .._core.protocol import AUTH_METHOD
from .budget import Budget

__all__ = [
    "READ_CAP",
    "SCHEMES",
    "AuditConnectionError",
    "Reply",
    "Target",
    "Transport",
    "make_transport",
    "parse_target",
]

#: Most bytes of one answer the audit reads; past it the answer is reported as oversized.
READ_CAP: Final = 8 * 1024 * 1024
#: Largest response head accepted from the server.
_MAX_HEAD: Final = 64 * 1024
_ANSWER_JSON: Final = StrictJSON(max_depth=64, max_object_members=100_000, max_array_items=10**6)


class AuditConnectionError(Exception):
    """The target cannot be reached, or refused the transport (exit status 2)."""


def _websockets_available() -> bool:
    try:
        import websockets.sync.client  # noqa: F401
    except ImportError:
        return False
    return True


WS_AVAILABLE: Final = _websockets_available()
SCHEMES: Final = ("http", "https", "tcp", "tls") + (("ws", "wss") if WS_AVAILABLE else ())


#: An address range written as a host ("10.0.0.1-20"): refused, the audit has one target.
_RANGE: Final = re.compile(r"^[0-9.]+-[0-9]+$")


@dataclass(frozen=True)
class Target:
    """One endpoint: never a range (a single host name or address, one port)."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    ssl: ssl.SSLContext | None

    @property
    def kind(self) -> str:
        """ "http", "tcp" or "ws": the family of checks that apply."""
        return {"https": "http", "tls": "tcp", "wss": "ws"}.get(self.scheme, self.scheme)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_target(url: str, *, cafile: str | None = None) -> Target:
    """Check ``url`` names one endpoint over a supported scheme (ValueError if not)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        extra = " (ws needs the websockets package)" if scheme in ("ws", "wss") else ""
        raise ValueError(f"unsupported scheme {scheme!r}{extra}: use one of {', '.join(SCHEMES)}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    host = parts.hostname
    if not host or any(c in host for c in "*,/ ") or _RANGE.match(host):
        raise ValueError(f"{url!r} must name one host (no wildcards, lists or ranges)")
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)
    if port is None:
        if default is None:
            raise ValueError(f"{url!r} needs a port, e.g. {scheme}://127.0.0.1:9000")
        port = default
    context = None
    if scheme in ("https", "tls", "wss"):
        context = ssl.create_default_context(cafile=cafile)
    return Target(url, scheme, host, port, parts.path or "/", context)


@dataclass
class Reply:
    """What came back for one message."""

    body: bytes | None  # None: no answer
    status: int | None = None  # HTTP status (http/https only)
    closed: bool = False  # the connection ended without an answer
    timed_out: bool = False  # nothing came within the timeout
    truncated: bool = False  # the answer was larger than READ_CAP
    elapsed: float = 0.0
    #: WebSocket only: the close code the server sent when it closed instead of answering.
    close_code: int | None = None


class Transport:
    """The interface the checks use; one subclass per scheme family."""

    def __init__(self, target: Target, budget: Budget, *, token: str | None, timeout: float):
        self.target = target
        self.budget = budget
        self.token = token
        self.timeout = timeout

    def exchange(self, data: bytes, *, notification: bool = False) -> Reply:
        """Send one message, return what came back (counts against the budget)."""
        raise NotImplementedError

    def connect_raw(self) -> socket.socket:
        """A fresh connection (TLS done), for the connection-level probes; counted once."""
        self.budget.take()
        return _open(self.target, self.timeout)

    def close(self) -> None:
        """Release any persistent connection."""


def _open(target: Target, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((target.host, target.port), timeout)
        if target.ssl is not None:
            sock = target.ssl.wrap_socket(sock, server_hostname=target.host)
    except OSError as exc:
        raise AuditConnectionError(_why(exc)) from None
    sock.settimeout(timeout)
    return sock


def _why(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); pass --cafile"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    return f"cannot connect: {type(exc).__name__}: {exc.strerror or exc}"[:200]


class HTTPTransport(Transport):
    """One POST per message on a fresh connection (see the module docstring)."""

    def headers(self, size: int) -> list[tuple[str, str]]:
        head = [
            ("Host", self.target.host_header),
            ("Content-Type", "application/json"),
            ("Content-Length", str(size)),
            ("Connection", "close"),
            ("User-Agent", "safe-rpc-audit"),
        ]
        if self.token is not None:
            head.append(("Authorization", f"Bearer {self.token}"))
        return head

    def exchange(self, data: bytes, *, notification: bool = False) -> Reply:
        sock = self.connect_raw()  # takes from the budget: one request per connection
        started = time.monotonic()
        try:
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
            out = conn.send(
                h11.Request(method="POST", target=self.target.path, headers=self.headers(len(data)))
            )
            if data:
                out += conn.send(h11.Data(data=data))
            out += conn.send(h11.EndOfMessage())
            # A server may answer (413) and close before reading a large body.
            with contextlib.suppress(OSError):
                sock.sendall(out)
            reply = read_http_response(conn, sock)
        finally:
            with contextlib.suppress(OSError):
                sock.close()
        reply.elapsed = time.monotonic() - started
        return reply


def read_http_response(conn: h11.Connection, sock: socket.socket) -> Reply:
    """Read one response (body capped at READ_CAP) from ``sock``."""
    status: int | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return Reply(None, status=status, closed=True)
        if event is h11.NEED_DATA:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return Reply(None, status=status, timed_out=True)
            except OSError:
                chunk = b""
            try:
                conn.receive_data(chunk)
            except h11.RemoteProtocolError:
                return Reply(None, status=status, closed=True)
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > READ_CAP:
                return Reply(bytes(body[:READ_CAP]), status=status, truncated=True)
        elif isinstance(event, h11.EndOfMessage):
            empty = not body and status in (200, 202, 204)
            return Reply(None if empty else bytes(body), status=status)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return Reply(None, status=status, closed=True)
        # InformationalResponse (1xx): keep reading.


class _TooBig(Exception):
    """An answer larger than READ_CAP announced itself."""


class StreamTransport(Transport):
    """A persistent connection carrying whole messages both ways (tcp, tls, ws)."""

    _marker = 0

    def _connect(self) -> None:
        raise NotImplementedError

    def _connected(self) -> bool:
        raise NotImplementedError

    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def _recv(self, timeout: float) -> bytes | None:
        """One message; None when the connection closed; TimeoutError when nothing came."""
        raise NotImplementedError

    def _close_code(self) -> int | None:
        """The peer's close code, where the framing has one (WebSocket)."""
        return None

    def exchange(self, data: bytes, *, notification: bool = False) -> Reply:
        self.budget.take()
        started = time.monotonic()
        try:
            if not self._connected():
                self._connect()
            self._send(data)
            if notification:
                reply = self._after_marker()
            else:
                body = self._recv(self.timeout)
                reply = Reply(body, closed=body is None, close_code=self._close_code())
        except TimeoutError:
            reply = Reply(None, timed_out=True)
        except _TooBig:
            reply = Reply(b"", truncated=True)
        except (OSError, EOFError):
            reply = Reply(None, closed=True)
        if reply.closed or reply.timed_out or reply.truncated:
            # A late answer would be read as the next check's: start a new connection.
            self.close()
        reply.elapsed = time.monotonic() - started
        return reply

    def _after_marker(self) -> Reply:
        time.sleep(0.05)  # let an answer the server should not send arrive first
        self.budget.take()
        StreamTransport._marker += 1
        marker = f"safe_rpc_audit_marker_{StreamTransport._marker}"
        self._send(
            f'{{"jsonrpc":"2.0","method":"safe_rpc_audit_nonexistent_marker","id":"{marker}"}}'.encode()
        )
        first: bytes | None = None
        deadline = time.monotonic() + self.timeout
        while True:
            body = self._recv(max(0.01, deadline - time.monotonic()))
            if body is None:
                return Reply(first, closed=first is None)
            if marker.encode() in body and _answer_id(body) == marker:
                return Reply(first)
            first = body if first is None else first


def _answer_id(body: bytes) -> Any:
    try:
        value = _ANSWER_JSON.loads(body)
    except JSONError:
        return None
    return value.get("id") if isinstance(value, dict) else None


class TCPTransport(StreamTransport):
    """safe_rpc's length-prefixed frames over TCP or TLS."""

    def __init__(self, target: Target, budget: Budget, *, token: str | None, timeout: float):
        super().__init__(target, budget, token=token, timeout=timeout)
        self._sock: socket.socket | None = None

    def _connected(self) -> bool:
        return self._sock is not None

    def _connect(self) -> None:
        self._sock = _open(self.target, self.timeout)
        if self.token is not None:
            self.budget.take()
            message = {"jsonrpc": "2.0", "method": AUTH_METHOD, "params": {"token": self.token}}
            self._send(json.dumps({**message, "id": 0}).encode())
            answer = self._recv(self.timeout)
            if answer is None or b'"result"' not in answer:
                self.close()
                raise AuditConnectionError("the server refused the token (rpc.authenticate)")

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(encode_frame(data) if data else b"\x00\x00\x00\x00")

    def _recv(self, timeout: float) -> bytes | None:
        assert self._sock is not None
        self._sock.settimeout(timeout)
        head = _recv_exactly(self._sock, 4)
        if head is None:
            return None
        length = int.from_bytes(head, "big")
        if length > READ_CAP:  # checked before reading (or allocating) anything for it
            raise _TooBig
        return _recv_exactly(self._sock, length)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    out = bytearray()
    while len(out) < size:
        try:
            chunk = sock.recv(min(size - len(out), 65536))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        out += chunk
    return bytes(out)


class WSTransport(StreamTransport):
    """One WebSocket message per JSON-RPC message (the websockets sync client)."""

    def __init__(self, target: Target, budget: Budget, *, token: str | None, timeout: float):
        super().__init__(target, budget, token=token, timeout=timeout)
        self._ws: Any = None
        self._closed_with: int | None = None

    def _connected(self) -> bool:
        return self._ws is not None

    def _connect(self) -> None:
        from websockets.exceptions import InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        # websockets >= 17 wants connect() in a with block unless legacy=True says this
        # object manages the connection itself (it does: see close()).
        legacy: dict[str, Any] = (
            {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}
        )
        try:
            self._ws = connect(
                self.target.url,
                additional_headers=headers,
                open_timeout=self.timeout,
                close_timeout=1,
                max_size=READ_CAP,
                compression=None,  # permessage-deflate would hide the sizes the probes test
                ssl=self.target.ssl,
                user_agent_header="safe-rpc-audit",
                **legacy,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise AuditConnectionError(
                f"the server refused the WebSocket handshake (HTTP {status}): "
                "does it serve WebSocket at this path?"
            ) from None
        except InvalidHandshake as exc:
            raise AuditConnectionError(
                f"WebSocket handshake failed: {type(exc).__name__}"
            ) from None
        except OSError as exc:
            raise AuditConnectionError(_why(exc)) from None

    def _send(self, data: bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        try:
            self._ws.send(text if text is not None else data)
        except ConnectionClosed:
            raise EOFError from None

    def _recv(self, timeout: float) -> bytes | None:
        from websockets.exceptions import ConnectionClosed

        self._closed_with = None
        try:
            message = self._ws.recv(timeout=timeout)
        except ConnectionClosed as exc:
            self._closed_with = exc.rcvd.code if exc.rcvd is not None else None
            return None
        return message.encode("utf-8") if isinstance(message, str) else bytes(message)

    def _close_code(self) -> int | None:
        return self._closed_with

    def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None


def make_transport(
    target: Target, budget: Budget, *, token: str | None, timeout: float
) -> Transport:
    """The transport for ``target``'s scheme."""
    kinds: dict[str, type[Transport]] = {
        "http": HTTPTransport,
        "tcp": TCPTransport,
        "ws": WSTransport,
    }
    return kinds[target.kind](target, budget, token=token, timeout=timeout)
