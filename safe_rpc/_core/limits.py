"""One object that holds every resource limit of a server.

Each default is named, commented with the reason for its value, and enforced *before* the
work it bounds (a byte limit before buffering, a length prefix before allocating, a batch
length before executing). The anchors are in ``research/security.md`` section 1.
"""

from __future__ import annotations

import dataclasses
import math

from .json import StrictJSON

__all__ = ["Limits"]

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
        ValueError: at construction, if a field is not a positive number or is above a
            hard ceiling (``max_depth`` above 128).
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
    #: A peer that does not read its responses is cut off after this long (SR-29).
    write_timeout: float = 30.0

    # -- concurrency ----------------------------------------------------------------------------
    #: Open connections per process, per transport; past it HTTP answers 503 and TCP closes.
    max_connections: int = 100
    #: Calls running at once on one TCP connection (pipelining) before the server stops
    #: reading from it (websockets' ``max_queue``).
    max_inflight_per_connection: int = 16
    #: Calls running at once in the whole process; past it calls get -32009 (jsonrpsee).
    max_inflight: int = 256

    # -- authentication -----------------------------------------------------------------------
    #: Largest bearer token accepted; longer ones fail before any decoding (SR-20, SR-36).
    max_token_bytes: int = 4 * KiB
    #: Failed authentications allowed per client address per minute before 429 (SR-40).
    auth_failures_per_minute: int = 10

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
    #: WebSocket connections per peer address, so one source cannot take every slot.
    max_connections_per_client: int = 20

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"Limits.{field.name} must be a number, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"Limits.{field.name} must be finite, got {value!r}")
            if value <= 0:
                raise ValueError(f"Limits.{field.name} must be positive, got {value!r}")
            if field.type in ("int",) and not isinstance(value, int):
                raise ValueError(f"Limits.{field.name} must be a whole number, got {value!r}")
        if self.max_depth > _HARD_MAX_DEPTH:
            raise ValueError(
                f"Limits.max_depth is at most {_HARD_MAX_DEPTH} (got {self.max_depth}): deeper "
                "nesting is never needed by an RPC message and would approach recursion limits"
            )
        if self.tcp_preauth_frame_bytes > self.max_request_bytes:
            raise ValueError("Limits.tcp_preauth_frame_bytes cannot exceed max_request_bytes")

    def parser(self) -> StrictJSON:
        """The strict parser for messages under these limits (depth, members, items)."""
        return StrictJSON(
            max_depth=self.max_depth,
            max_object_members=self.max_object_members,
            max_array_items=self.max_array_items,
        )
