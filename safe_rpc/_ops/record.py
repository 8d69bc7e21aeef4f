"""What an observer receives: one immutable record per finished call, and the fan-out.

A record never carries params, results or error data: only what an operator needs to see a
service (which method, who, from where, how it ended, how long, how big). Values that came
from the wire are bounded before they are stored: ``method`` is a *registered* name or None
(an unknown name from the peer never reaches an observer, so it can neither flood a metrics
label set nor inject text into a log), and ``request_id`` is cut to 64 characters.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, runtime_checkable

from .._core.context import Principal

__all__ = ["CallRecord", "Observer", "ObserverSet", "incoming_traceparent"]

logger = logging.getLogger("safe_rpc.ops")

#: A failing observer is logged at most once per this many failures (and on the first).
LOG_EVERY: Final = 1000
_MAX_ID_CHARS: Final = 64
# Error responses come only from the pipeline's own encoder, whose member order is fixed:
# the code is read from the bytes instead of re-parsing the answer.
_ERROR_PREFIX: Final = b'{"jsonrpc":"2.0","error":{"code":'

#: The W3C ``traceparent`` of the HTTP request being dispatched, when the transport saw a
#: well-formed one (set only while observers are installed; read by ``ObserverSet.emit``).
incoming_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "safe_rpc_traceparent", default=None
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """One finished call, as observers see it.

    A batch gives one record per element; a message refused before any element could be
    read (parse error, over a size or batch limit, an empty batch) gives one record with
    ``method=None``, as does a request a transport refused before dispatch (``refused``).

    Attributes:
        method: the registered method name; None when the name is not registered or the
            message or element was not a valid request.
        subject: the verified caller's ``sub``, or None for an anonymous call.
        transport: ``"inprocess"``, ``"http"``, ``"tcp"`` or another transport's name.
        client: the peer address as the transport saw it (after trusted proxies), if any.
        error_code: the JSON-RPC error code of the answer, or None for a success. None as
            well for a notification (no answer is encoded; failures are logged).
        duration: seconds from the start of this element's handling to its encoded answer.
        request_bytes: size of the whole message the call arrived in.
        response_bytes: size of this call's own answer (0 for a notification).
        batch_size: number of elements of the message (1 for a single request).
        request_id: the JSON-RPC id (cut to 64 characters), None for a notification.
        started_at: wall-clock start, seconds since the epoch.
        traceparent: the W3C trace context the HTTP request carried, when well formed.
        refused: True when the transport refused the request before dispatch (a bad
            token: -32001; a limit: its code); ``method`` is then None.
    """

    method: str | None
    subject: str | None
    transport: str
    client: str | None
    error_code: int | None
    duration: float
    request_bytes: int
    response_bytes: int
    batch_size: int
    request_id: str | int | float | None = None
    started_at: float = 0.0
    traceparent: str | None = None
    refused: bool = False


@runtime_checkable
class Observer(Protocol):
    """Anything callable with a ``CallRecord``. It runs inline, after the call, in the
    serving event loop or thread: keep it fast and hand slow work to a queue.

    An observer may also define ``on_event(kind: str, label: str)`` to hear about what
    happens outside calls: ``("auth_failed", transport)``, ``("refused", limit_name)``.
    """

    def __call__(self, record: CallRecord, /) -> None: ...


def error_code(answer: bytes | None) -> int | None:
    """The code of an error answer encoded by the pipeline, else None."""
    if answer is None or not answer.startswith(_ERROR_PREFIX):
        return None
    end = answer.find(b",", len(_ERROR_PREFIX))
    try:
        return int(answer[len(_ERROR_PREFIX) : end])
    except ValueError:
        return None


def _bounded_id(value: Any) -> str | int | float | None:
    if isinstance(value, str):
        return value[:_MAX_ID_CHARS]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


class ObserverSet:
    """The observers of one server. ``emit`` is what the pipeline calls per finished call.

    An observer that raises is logged (the first failure and every ``LOG_EVERY``-th after,
    per observer: a broken observer cannot flood the log) and the call is unaffected.
    """

    def __init__(self, observers: Iterable[Callable[[CallRecord], None]] = ()) -> None:
        self._observers: list[Callable[[CallRecord], None]] = []
        self._listeners: list[Callable[[str, str], None]] = []
        self._failures: dict[int, int] = {}
        for observer in observers:
            self.add(observer)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def add(self, observer: Callable[[CallRecord], None]) -> None:
        if not callable(observer):
            raise TypeError("an observer must be callable with a CallRecord")
        self._observers.append(observer)
        on_event = getattr(observer, "on_event", None)
        if callable(on_event):
            self._listeners.append(on_event)

    def emit(
        self,
        method: str | None,
        principal: Principal | None,
        transport: str,
        client: str | None,
        answer: bytes | None,
        started: float,
        request_bytes: int,
        batch_size: int,
        request_id: Any = None,
        refused: bool = False,
    ) -> None:
        duration = time.perf_counter() - started
        record = CallRecord(
            method=method,
            subject=principal.subject if principal is not None else None,
            transport=transport,
            client=client,
            error_code=error_code(answer),
            duration=duration,
            request_bytes=request_bytes,
            response_bytes=len(answer) if answer is not None else 0,
            batch_size=batch_size,
            request_id=_bounded_id(request_id),
            started_at=time.time() - duration,
            traceparent=incoming_traceparent.get(),
            refused=refused,
        )
        for observer in self._observers:
            try:
                observer(record)
            except Exception:
                self._failed(observer)

    def refused(
        self, transport: str, client: str | None, answer: bytes, limit: str | None = None
    ) -> None:
        """A transport refused a request before dispatch: ``limit`` names the ``Limits``
        field, None means a failed authentication. Observers get a record (``refused``) and
        event listeners the reason."""
        self.event("auth_failed" if limit is None else "refused", limit or transport)
        if self._observers:
            self.emit(None, None, transport, client, answer, time.perf_counter(), 0, 1, None, True)

    def event(self, kind: str, label: str) -> None:
        """Something outside a call happened (a failed authentication, a refusal)."""
        for listener in self._listeners:
            try:
                listener(kind, label)
            except Exception:
                self._failed(listener)

    def _failed(self, observer: object) -> None:
        key = id(observer)
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        if count == 1 or count % LOG_EVERY == 0:
            logger.exception(
                "observer %s failed (%d failure(s) so far); the call is unaffected",
                # A listener is a bound ``on_event``: name the observer it belongs to.
                type(getattr(observer, "__self__", observer)).__qualname__,
                count,
            )
