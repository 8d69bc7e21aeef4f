"""The sans-IO core of a connection that stays open: framed TCP and WebSocket share it.

It holds every rule that is about *the connection* rather than about one message (the
message rules are the pipeline's): authenticate first (``rpc.authenticate`` or a principal
from the WebSocket handshake), the pre-authentication message cap and deadline, the idle
deadline, the per-connection in-flight cap, the bytes of answers waiting to be written
(per connection and across the process), the write deadline, and subscriptions: their ids,
their binding to this connection and principal, their queues and their end.

No I/O and no asyncio here. A driver (``_transports/driver.py``) feeds it events
(``message_received``, ``answer_ready``, ``item_ready``, ``stream_ended``,
``write_done``, ``timer_fired``, ``eof``, ``gone``), asks it what to write next
(``next_write``), whether to read (``wants_input``) and when to wake up (``deadline``),
and carries out the actions it emits (``take_actions``). Times are monotonic seconds
passed in by the driver, so tests can drive it with a fake clock.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from .._core.context import Context, Principal
from .._core.errors import (
    RateLimited,
    RequestTooLarge,
    RPCError,
    ServerBusy,
    SlowConsumer,
    Unauthenticated,
)
from .._core.json import dumps_strict
from .._core.logs import log_safe
from .._core.protocol import error_object, error_response
from .actions import (
    Abort,
    Action,
    Close,
    Dispatch,
    PendingBudget,
    StartStream,
    StopStream,
    StreamSpec,
    auth_request,
    auth_token,
    maybe_auth_call,
)

if TYPE_CHECKING:
    from .._server.server import RPCServer

__all__ = [
    "AUTH_FAILURE_DELAY",
    "SESSION",
    "Abort",
    "Close",
    "ConnectionCore",
    "Dispatch",
    "PendingBudget",
    "Session",
    "StartStream",
    "StopStream",
]

logger = logging.getLogger("safe_rpc.connection")

#: Delay before closing after a failed authentication: slows online guessing (SR-30).
AUTH_FAILURE_DELAY: Final = 0.2
#: Subscription ids: 128 random bits, hex (unguessable, so never the only check).
_ID_BYTES: Final = 16


class Session:
    """What a subscription starter sees of the connection a message came from."""

    __slots__ = ("core", "key")

    def __init__(self, core: ConnectionCore, key: int) -> None:
        self.core = core
        self.key = key

    def subscribe(
        self, spec: StreamSpec, args: list[Any], kwargs: dict[str, Any], ctx: Context
    ) -> str:
        return self.core._subscribe(self.key, spec, args, kwargs, ctx.principal)

    def unsubscribe(self, stream_id: str, principal: Principal | None) -> bool:
        return self.core._unsubscribe(stream_id, principal)


#: The session of the message being dispatched (set by the driver around the dispatch):
#: a context variable, so the pipeline carries no parameter for it. Unset over HTTP and
#: in-process, where a subscription therefore answers -32601.
SESSION: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "safe_rpc_session", default=None
)


class _Stream:
    __slots__ = ("id", "key", "principal", "queued", "spec", "start", "started")

    def __init__(self, id: str, key: int, spec: StreamSpec, principal: Principal | None) -> None:
        self.id = id
        self.key = key
        self.spec = spec
        self.principal = principal
        self.queued = 0  # items in the outbox, not yet handed to the transport
        self.started = False
        self.start: StartStream | None = None


def _subject(principal: Principal | None) -> str | None:
    return None if principal is None else principal.subject


class ConnectionCore:
    """The state machine of one connection (see the module docstring).

    Args:
        rpc: the server (authentication, re-checks, the failed-auth limiter).
        budget: the process-wide pending-bytes budget shared by every connection.
        peer: the peer address (for the limiter and logs).
        now: the monotonic time the connection opened.
        principal: a caller already authenticated by the handshake (WebSocket).
        keepalive: the transport pings the peer (WebSocket): a connection whose only work
            is a quiet subscription is then not idle.
        transport: its name, for reports (``"tcp"``, ``"websocket"``).
    """

    def __init__(
        self,
        rpc: RPCServer,
        budget: PendingBudget,
        *,
        peer: str,
        now: float,
        principal: Principal | None = None,
        keepalive: bool = False,
        transport: str = "tcp",
    ) -> None:
        self.rpc = rpc
        self.transport = transport
        self.limits = rpc.limits
        # With keepalive pings (WebSocket) a quiet subscription is a live peer; without
        # them (TCP) only traffic shows it, so the idle deadline still applies.
        self.keepalive = keepalive
        self.budget = budget
        self.peer = peer
        self.principal = principal
        # Without a keyring there is nothing to authenticate with: public methods only.
        self.authenticated = principal is not None or rpc.keyring is None
        self.opened = now
        self.last_activity = now
        self.inflight = 0
        self.closing: Close | None = None
        self.finished = False
        self._keys = 0
        self._actions: list[Action] = []
        self._outbox: deque[tuple[bytes, _Stream | None]] = deque()
        self._queued_bytes = 0
        self._transit = 0  # bytes handed to the driver, not yet reported written
        self._transit_since: float | None = None
        self._streams: dict[str, _Stream] = {}
        self._eof = False

    # -- queries --------------------------------------------------------------------------------

    @property
    def max_message(self) -> int:
        """The largest message accepted now (the pre-authentication cap until authenticated)."""
        limits = self.limits
        return limits.max_request_bytes if self.authenticated else limits.tcp_preauth_frame_bytes

    @property
    def pending(self) -> int:
        """Bytes of answers and items waiting to be written (queued or being written)."""
        return self._queued_bytes + self._transit

    @property
    def wants_input(self) -> bool:
        """Read the next message? No while closing, at the in-flight cap, or while the peer
        is behind on reading its answers (the pending-bytes bound)."""
        return (
            self.closing is None
            and not self._eof
            and not self.finished
            and self.inflight < self.limits.max_inflight_per_connection
            and self.pending < self.limits.max_pending_bytes_per_connection
        )

    @property
    def has_output(self) -> bool:
        return bool(self._outbox) and self._transit_since is None

    @property
    def streams(self) -> int:
        return len(self._streams)

    def deadline(self) -> float | None:
        """When ``timer_fired`` must be called next (None: no deadline now)."""
        limits = self.limits
        times = []
        if self._transit_since is not None:
            times.append(self._transit_since + limits.write_timeout)
        if self.closing is None and not self.finished:
            if not self.authenticated:
                times.append(self.opened + limits.tcp_auth_timeout)
            elif self.inflight == 0 and not self.pending and not (self._streams and self.keepalive):
                times.append(self.last_activity + limits.tcp_idle_timeout)
        return min(times) if times else None

    def take_actions(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    # -- events ---------------------------------------------------------------------------------

    def message_received(self, data: bytes, now: float) -> None:
        """One whole message (a frame, a WebSocket text message) arrived."""
        if self.closing is not None or self.finished:
            return
        self.last_activity = now
        if len(data) > self.max_message:
            limit = "max_request_bytes" if self.authenticated else "tcp_preauth_frame_bytes"
            self._refuse(RequestTooLarge(), None, code=1009, limit=limit)
            return
        if not self.authenticated:
            self._authenticate(data, first=True)
            return
        if maybe_auth_call(data):
            self._authenticate(data, first=False)
            return
        if self.principal is not None and not self._still_valid(self.principal):
            # Expired or revoked: the pipeline answers this call -32001; every stream of
            # the principal ends with an error notification now.
            self._end_streams(Unauthenticated())
        self._keys += 1
        self.inflight += 1
        session = Session(self, self._keys)
        self._actions.append(Dispatch(self._keys, data, self.principal, session))

    def answer_ready(self, key: int, answer: bytes | None, now: float) -> None:
        """The pipeline finished the message dispatched under ``key``."""
        self.inflight -= 1
        if self.finished:
            return
        created = [s for s in self._streams.values() if s.key == key and not s.started]
        if answer is not None and not self._fits(len(answer)):
            self._report("max_pending_bytes")  # this connection's bound or the process's
            self._abort()
            return
        if answer is not None:
            self._enqueue(answer, None)
        for stream in created:
            stream.started = True
            if answer is None or stream.start is None:  # nobody can know its id: never start
                del self._streams[stream.id]
                continue
            # Its items queue behind the answer that carries its id.
            self._actions.append(stream.start)
        self._maybe_finish()

    def item_ready(self, stream_id: str, item: Any, now: float) -> None:
        """A subscription's generator yielded ``item`` (a Python value)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # ended meanwhile: its late items are dropped
        if stream.principal is not None and not self._still_valid(stream.principal):
            self._end(stream, Unauthenticated())
            return
        try:
            value = stream.spec.item_adapter.dump_python(item, mode="json", warnings="error")
            params = {"subscription": stream.id, "result": value}
            data = dumps_strict({"jsonrpc": "2.0", "method": "rpc.subscription", "params": params})
        except Exception as exc:  # an item its yield type does not allow, NaN, huge int
            self._end(stream, self.rpc._internal_error(stream.spec.name, exc))
            return
        if stream.queued >= self.limits.subscription_queue or not self._fits(len(data)):
            self._report("subscription_queue")
            self._end(stream, SlowConsumer())
            return
        self._enqueue(data, stream)

    def stream_ended(self, stream_id: str, error: BaseException | None, now: float) -> None:
        """The generator returned (``error`` None) or raised."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if error is None:
            self._end(stream, None, keep_items=True)
        elif isinstance(error, RPCError):
            self._end(stream, error, keep_items=True)
        else:
            self._end(stream, self.rpc._internal_error(stream.spec.name, error), keep_items=True)

    def next_write(self, now: float) -> bytes | None:
        """The next message to write (the driver reports ``write_done`` when it drained)."""
        batch = self.next_writes(now, 0)
        return batch[0] if batch else None

    def next_writes(self, now: float, max_bytes: int) -> list[bytes]:
        """The next messages to write together: at least one, then more while they total at
        most ``max_bytes`` (one system call for many small items). One ``write_done`` for
        all of them."""
        if self._transit_since is not None or not self._outbox:
            return []
        batch: list[bytes] = []
        total = 0
        while self._outbox and (not batch or total + len(self._outbox[0][0]) <= max_bytes):
            data, stream = self._outbox.popleft()
            if stream is not None:
                stream.queued -= 1
            batch.append(data)
            total += len(data)
        self._queued_bytes -= total
        self._transit = total
        self._transit_since = now
        return batch

    def write_done(self, now: float) -> None:
        self.budget.used -= self._transit
        self._transit = 0
        self._transit_since = None
        self.last_activity = now
        self._maybe_finish()

    def timer_fired(self, now: float) -> None:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return
        if (
            self._transit_since is not None
            and now >= self._transit_since + self.limits.write_timeout
        ):
            self._report("write_timeout")
            self._abort()
            return
        self._report("tcp_idle_timeout" if self.authenticated else "tcp_auth_timeout")
        self._close(Close(code=1008 if not self.authenticated else 1000))

    def refuse(self, error: RPCError | None, limit: str | None) -> None:
        """A message that cannot be read (a bad frame header, a missed frame deadline): send
        ``error`` (if any) with id null, then close. ``limit``: the Limits field at fault."""
        if error is None:
            self._report(limit)
            self._close(Close(code=1008))
        elif limit is None:  # unreadable but over no limit (a bad header): answered only
            self._enqueue(dumps_strict(error_response(error, None)), None)
            self._close(Close(code=1008))
        else:
            self._refuse(error, None, limit=limit)

    def eof(self, now: float) -> None:
        """The peer finished sending: answer what is in flight, then close."""
        self._eof = True
        for stream in list(self._streams.values()):
            self._drop(stream)
        self._maybe_finish()

    def gone(self) -> None:
        """The connection is closed or aborted: drop every piece of work for it."""
        for stream in list(self._streams.values()):
            self._drop(stream)
        self.budget.used -= self.pending
        self._outbox.clear()
        self._queued_bytes = self._transit = 0
        self._transit_since = None
        self.finished = True

    # -- subscriptions (called from the starter, through Session) -------------------------------

    def _subscribe(
        self,
        key: int,
        spec: StreamSpec,
        args: list[Any],
        kwargs: dict[str, Any],
        principal: Principal | None,
    ) -> str:
        if self.closing is not None or self.finished or self._eof:
            raise ServerBusy()
        if len(self._streams) >= self.limits.max_subscriptions_per_connection:
            raise ServerBusy()
        stream_id = secrets.token_hex(_ID_BYTES)
        stream = _Stream(stream_id, key, spec, principal)
        stream.start = StartStream(stream_id, spec, args, kwargs)
        self._streams[stream_id] = stream
        return stream_id

    def _unsubscribe(self, stream_id: str, principal: Principal | None) -> bool:
        stream = self._streams.get(stream_id) if isinstance(stream_id, str) else None
        # Only on the connection that holds it, by the principal that opened it; any other
        # case answers exactly like an id that does not exist (nothing to probe).
        if stream is None or _subject(stream.principal) != _subject(principal):
            return False
        self._drop(stream)
        return True

    # -- internals ------------------------------------------------------------------------------

    def _still_valid(self, principal: Principal) -> bool:
        keyring = self.rpc.keyring
        return keyring is not None and keyring.still_valid(principal)

    def _fits(self, size: int) -> bool:
        # A connection with nothing waiting may always have one answer queued; one that is
        # already behind may not go past its own bound or the process's (the answers of
        # calls admitted before reading stopped count too: that is what bounds a peer that
        # pipelines many large calls and never reads). Raise the per-connection bound for
        # clients that pipeline several maximal answers on purpose.
        if not self.pending:
            return True
        return (
            self.pending + size <= self.limits.max_pending_bytes_per_connection
            and self.budget.used + size <= self.budget.limit
        )

    def _enqueue(self, data: bytes, stream: _Stream | None) -> None:
        if self.finished:
            return  # the connection is gone: nothing is held for it
        self._outbox.append((data, stream))
        self._queued_bytes += len(data)
        self.budget.used += len(data)
        if stream is not None:
            stream.queued += 1

    def _end(self, stream: _Stream, error: RPCError | None, *, keep_items: bool = False) -> None:
        """Queue the end (or error) notification of ``stream`` and stop its generator.

        ``keep_items``: the items already queued still go out first (the generator ended
        by itself); otherwise they are dropped (slow consumer, a caller no longer valid)."""
        self._drop(stream, keep_items=keep_items)
        params: dict[str, Any] = {"subscription": stream.id}
        if error is None:
            params["end"] = True
        else:
            params["error"] = error_object(error)
        data = dumps_strict({"jsonrpc": "2.0", "method": "rpc.subscription", "params": params})
        self._enqueue(data, None)

    def _drop(self, stream: _Stream, *, keep_items: bool = False) -> None:
        """Forget ``stream``: its queued items go (unless kept), its generator is cancelled."""
        del self._streams[stream.id]
        if stream.queued and not keep_items:
            kept = deque(entry for entry in self._outbox if entry[1] is not stream)
            dropped = sum(len(data) for data, owner in self._outbox if owner is stream)
            self._outbox = kept
            self._queued_bytes -= dropped
            self.budget.used -= dropped
            stream.queued = 0
        if stream.started:
            self._actions.append(StopStream(stream.id))
        stream.started = True  # a stream not yet started never will be

    def _end_streams(self, error: RPCError) -> None:
        for stream in list(self._streams.values()):
            self._end(stream, error)

    def _authenticate(self, data: bytes, *, first: bool) -> None:
        limiter = self.rpc.auth_limiter
        request = auth_request(data)
        request_id = None if request is None or request.is_notification else request.id
        if limiter.blocked(self.peer):
            self._refuse(RateLimited(), None, limit="auth_failures_per_minute")
            return
        token = auth_token(request)
        try:
            if token is None:
                raise Unauthenticated()
            principal = self.rpc.authenticate(token)
        except Unauthenticated:
            limiter.record_failure(self.peer)
            if request is not None and request.is_notification:
                self._report(None)
                self._close(Close(AUTH_FAILURE_DELAY, 1008))  # no answer to a notification
            else:
                self._refuse(Unauthenticated(), request_id, delay=AUTH_FAILURE_DELAY)
            return
        if self.principal is not None and principal.subject != self.principal.subject:
            # A different caller now: the streams the previous one opened are not theirs.
            self._end_streams(Unauthenticated())
        self.principal = principal
        self.authenticated = True
        if request is not None and not request.is_notification:
            result = {"subject": principal.subject, "expires_at": principal.expires_at}
            self._enqueue(
                dumps_strict({"jsonrpc": "2.0", "result": result, "id": request_id}), None
            )

    def _refuse(
        self,
        error: RPCError,
        id: Any,
        *,
        delay: float = 0.0,
        code: int = 1008,
        limit: str | None = None,
    ) -> None:
        body = dumps_strict(error_response(error, id))
        self._report(limit, body)
        self._enqueue(body, None)
        self._close(Close(delay, code))

    def _report(self, limit: str | None, body: bytes | None = None) -> None:
        """One refusal of this peer: ``limit`` is the Limits field that refused it (None: a
        failed authentication), ``body`` the answer sent, if any. The one place to report
        refusals from: the log, and the server's observers (a record when an answer was
        sent, else an event)."""
        logger.info(
            "%s peer %s refused (%s)",
            self.transport,
            log_safe(self.peer),
            limit or "authentication",
        )
        ops = self.rpc.ops
        if body is not None:
            ops.refused(self.transport, self.peer, body, limit)
        else:
            ops.event("auth_failed" if limit is None else "refused", limit or self.transport)

    def _close(self, close: Close) -> None:
        if self.closing is None:
            self.closing = close
            for stream in list(self._streams.values()):
                self._drop(stream)
            self._actions.append(close)

    def _abort(self) -> None:
        self.gone()
        self._actions.append(Abort())

    def _maybe_finish(self) -> None:
        if self._eof and self.inflight == 0 and not self.pending and self.closing is None:
            self._close(Close())
