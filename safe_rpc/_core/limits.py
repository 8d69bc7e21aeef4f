"""One object that holds every resource limit of a server.

Each default is named, commented with the reason for its value, and enforced *before* the
work it bounds (a byte limit before buffering, a length prefix before allocating, a batch
length before executing). The threat each one answers is a row of SECURITY.md. The parser
presets for the other documents safe_rpc reads (answers, tokens, key files, the TCP
authentication frame) are defined at the end, once, for every layer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Final

from .errors import ConfigError
from .json import StrictJSON

__all__ = [
    "ARGUMENT_JSON",
    "AUTH_FRAME_JSON",
    "CLIENT_JSON",
    "KEY_FILE_JSON",
    "TOKEN_JSON",
    "Limits",
]

KiB = 1024
MiB = 1024 * KiB

# Hard ceilings: a configured value above these is refused, because the code below relies on
# them (the depth bound keeps recursion in the strict parser far from Python's own limit).
_HARD_MAX_DEPTH = 128


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Resource limits shared by the dispatcher and every transport.

    Sizes are in bytes, times in seconds (floats). Pass one instance to ``RPCServer``;
    every transport reads its limits from there.

    Example:
        ```python
        from safe_rpc import Limits, RPCServer

        rpc = RPCServer(limits=Limits(max_request_bytes=64 * 1024, call_timeout=5.0))
        ```

    Raises:
        ConfigError: at construction (a ``ValueError`` too), if a field is not a positive
            number or is above a hard ceiling (``max_depth`` above 128).
    """

    # -- message sizes ----------------------------------------------------------------------
    #: Largest request body / frame. nginx's ``client_max_body_size`` default; a worst-case
    #: strict parse of 1 MiB costs about 0.2 s of CPU on this class of machine.
    max_request_bytes: int = 1 * MiB
    #: Largest response (one response, or a whole batch answer). Four times the request,
    #: enough for results that expand their input, small enough to bound amplification.
    max_response_bytes: int = 4 * MiB
    #: Most elements in one batch. Every element is a handler call: this caps the work one
    #: message can buy (geth allows 1,000; 100 is plenty for real clients).
    max_batch: int = 100

    # -- JSON shape (checked by the strict parser before and during parsing) ----------------
    #: Deepest nesting of arrays and objects in a whole message. JSON-RPC envelopes need 2-3
    #: levels; 32 leaves room for structured params and stays far from any recursion limit.
    max_depth: int = 32
    #: Most members in one object; bounds hashing work (SR-10) and validation CPU.
    max_object_members: int = 1_000
    #: Most items in one array; bounds validation CPU on top of the byte limit.
    max_array_items: int = 10_000

    # -- time ---------------------------------------------------------------------------------
    #: Deadline for one handler call; past it the handler is cancelled and the caller gets
    #: -32002 (geth's ``WriteTimeout`` and error code).
    call_timeout: float = 30.0
    #: HTTP: time allowed from connection (or end of the previous response) to the end of the
    #: request headers; stops slowloris (Go's ``ReadHeaderTimeout``; uvicorn has none).
    header_timeout: float = 10.0
    #: HTTP: total time allowed to receive one request body (geth ``ReadTimeout``).
    body_timeout: float = 30.0
    #: HTTP: an idle keep-alive connection is closed after this long (uvicorn's default).
    keepalive_timeout: float = 5.0
    #: HTTP: largest request head (request line and header fields), complete or not; larger
    #: ones get 431 (h11's own cap on an incomplete head; Go allows 1 MiB, nginx 4 x 8 KiB).
    max_header_bytes: int = 16 * KiB

    # -- TCP transport ------------------------------------------------------------------------
    #: Largest frame accepted before the connection has authenticated: enough for one
    #: ``rpc.authenticate`` call with a 4 KiB token, nothing more.
    tcp_preauth_frame_bytes: int = 8 * KiB
    #: An unauthenticated connection must authenticate within this time.
    tcp_auth_timeout: float = 10.0
    #: Once a frame's length prefix arrived, the rest must arrive within this time.
    tcp_frame_timeout: float = 30.0
    #: An authenticated connection that sends nothing for this long is closed.
    tcp_idle_timeout: float = 120.0
    #: A peer that does not read its responses is cut off after this long (SR-29): on TCP,
    #: and on HTTP once a response stops draining (the write buffer over its high-water mark)
    #: or a closing connection still holds unsent bytes.
    write_timeout: float = 30.0

    # -- concurrency ----------------------------------------------------------------------------
    #: Open connections per process, per transport; past it HTTP answers 503 and TCP closes.
    max_connections: int = 100
    #: HTTP: open connections from one peer address (the socket's, not X-Forwarded-For) per
    #: process; past it the new connection gets 503 and is closed at once. Below
    #: ``max_connections`` so that one source cannot take every slot (100 silent sockets
    #: from one host locked everyone out until the header deadline); 16 still covers a
    #: browser's 6 connections per host or a pooled client behind one NAT address. The
    #: app's ``trusted_proxies`` are not capped; behind a proxy the app does not trust,
    #: raise it (a value above ``max_connections`` has no effect).
    max_connections_per_client: int = 16
    #: Calls running at once on one TCP connection (pipelining) before the server stops
    #: reading from it (websockets' ``max_queue``).
    max_inflight_per_connection: int = 16
    #: Calls running at once in the whole process; past it calls get -32009 (jsonrpsee).
    max_inflight: int = 256
    #: Threads that run sync handlers under ``dispatch_async`` (one pool per server). When
    #: every one is held, including by handlers still running past their deadline, a new
    #: sync call is answered -32009 at once. 32 is the stdlib executor's ceiling; threads
    #: start on demand and retire when idle.
    max_threads: int = 32

    # -- authentication -----------------------------------------------------------------------
    #: Largest bearer token accepted; longer ones fail before any decoding (SR-20, SR-36).
    max_token_bytes: int = 4 * KiB
    #: Failed authentications allowed per client address per minute before 429 (SR-40).
    auth_failures_per_minute: int = 10

    # -- shared state (the store: revocations, quotas, single-use tokens) ----------------------
    #: Most seconds one call waits on the store (a quota decision, a single-use claim);
    #: past it the store counts as down. A LAN Redis answers in well under a millisecond.
    store_timeout: float = 0.5
    #: A revocation made anywhere is refused by every process within this many seconds
    #: (each process reads the store's revocation version four times per interval).
    revocation_staleness: float = 1.0
    #: How long a process keeps serving private calls on its cached revocations while the
    #: store cannot be read; past it private calls get -32009 until the store is back.
    revocation_max_stale: float = 30.0
    # -- connections that stay open (framed TCP, WebSocket) ------------------------------------
    #: Bytes of answers and subscription items waiting to be written on one connection; past
    #: it the connection is not read (no new request is admitted). Two maximal answers.
    max_pending_bytes_per_connection: int = 8 * MiB
    #: The same, summed over every connection of the process: an answer that would push a
    #: connection already behind past this bound aborts that connection (its work is dropped).
    max_pending_bytes: int = 64 * MiB
    #: Subscriptions open at once on one connection; past it a subscribe call gets -32009.
    max_subscriptions_per_connection: int = 16
    #: Items a subscriber may be behind before that subscription ends with -32011.
    subscription_queue: int = 64
    #: WebSocket keepalive: a ping every this many seconds (the websockets library's 20 s)...
    ws_ping_interval: float = 20.0
    #: ...and the connection is closed when its pong does not arrive within this.
    ws_ping_timeout: float = 20.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"Limits.{field.name} must be a number, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"Limits.{field.name} must be finite, got {value!r}")
            if value <= 0:
                raise ConfigError(f"Limits.{field.name} must be positive, got {value!r}")
            if field.type in ("int",) and not isinstance(value, int):
                raise ConfigError(f"Limits.{field.name} must be a whole number, got {value!r}")
        if self.max_depth > _HARD_MAX_DEPTH:
            raise ConfigError(
                f"Limits.max_depth is at most {_HARD_MAX_DEPTH} (got {self.max_depth}): deeper "
                "nesting is never needed by an RPC message and would approach recursion limits"
            )
        if self.tcp_preauth_frame_bytes > self.max_request_bytes:
            raise ConfigError("Limits.tcp_preauth_frame_bytes cannot exceed max_request_bytes")

    def parser(self) -> StrictJSON:
        """The strict parser for messages under these limits (depth, members, items)."""
        return StrictJSON(
            max_depth=self.max_depth,
            max_object_members=self.max_object_members,
            max_array_items=self.max_array_items,
        )


# -- parser presets: the other JSON documents safe_rpc reads, each bounded for its shape ----
# (a request is read with ``Limits.parser()``). Defined once here so the layers share them.

#: What a client accepts from a server: deeper and wider than a request may be (results can
#: expand their input); the client's response byte cap bounds the work (SECURITY.md SR-03).
CLIENT_JSON: Final = StrictJSON(max_depth=64, max_object_members=10_000, max_array_items=100_000)
#: The header and payload of a token: small flat objects (SECURITY.md SR-33 to SR-38).
TOKEN_JSON: Final = StrictJSON(max_depth=4, max_object_members=32, max_array_items=64)
#: A key file: ``{"audience", "active", "keys": {kid: hex...}, "max_lifetime"}``.
KEY_FILE_JSON: Final = StrictJSON(max_depth=3, max_object_members=256, max_array_items=16)
#: The ``rpc.authenticate`` frame a TCP connection must send first, read before the peer is
#: known: an envelope with one ``{"token": ...}`` param, nothing more (SECURITY.md SR-27, SR-30).
AUTH_FRAME_JSON: Final = StrictJSON(max_depth=4, max_object_members=8, max_array_items=8)
#: Argument values typed on the command line: the same shape limits as a request.
ARGUMENT_JSON: Final = Limits().parser()
