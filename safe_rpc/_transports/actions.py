"""What the connection core emits and needs, with no behaviour: the actions a driver
carries out, the process-wide pending-bytes budget, and the reading of an
``rpc.authenticate`` message."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._core.context import Principal
from .._core.json import JSONError
from .._core.limits import AUTH_FRAME_JSON
from .._core.protocol import AUTH_METHOD, Request, classify

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from .connection import Session

__all__ = [
    "Abort",
    "Action",
    "Close",
    "Dispatch",
    "PendingBudget",
    "StartStream",
    "StopStream",
    "StreamSpec",
    "auth_request",
    "auth_token",
    "maybe_auth_call",
]


class StreamSpec(Protocol):
    """What the core needs of a registered subscription (``_server/subscriptions.py``)."""

    name: str
    func: Callable[..., Any]
    item_adapter: TypeAdapter[Any]


# -- actions ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Dispatch:
    """Run ``data`` through the pipeline for this connection; report ``answer_ready(key)``."""

    key: int
    data: bytes
    principal: Principal | None
    session: Session


@dataclasses.dataclass(frozen=True, slots=True)
class StartStream:
    """Iterate the subscription's generator; report each item and its end."""

    stream_id: str
    spec: StreamSpec
    args: list[Any]
    kwargs: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class StopStream:
    """Cancel the subscription's generator (its end was already queued, if due)."""

    stream_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """Stop reading, write what is queued, then close (after ``delay`` seconds)."""

    delay: float = 0.0
    code: int = 1000  # the WebSocket close code (RFC 6455 section 7.4.1)


@dataclasses.dataclass(frozen=True, slots=True)
class Abort:
    """Cut the connection now, without flushing (a peer that does not read)."""


Action = Dispatch | StartStream | StopStream | Close | Abort


class PendingBudget:
    """Bytes waiting to be written, summed over every connection of one server process."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


def maybe_auth_call(data: bytes) -> bool:
    # A cheap look before parsing: only messages that can be the reserved call are parsed.
    return AUTH_METHOD.encode() in data and auth_request(data) is not None


def auth_request(data: bytes) -> Request | None:
    try:
        message = AUTH_FRAME_JSON.loads(data)
    except JSONError:
        return None
    request = classify(message)
    if type(request) is Request and request.method == AUTH_METHOD:
        return request
    return None


def auth_token(request: Request | None) -> str | None:
    """The token of an ``rpc.authenticate`` call: ``{"token": ...}`` or ``[token]``."""
    if request is None:
        return None
    params = request.params
    token = None
    if isinstance(params, dict) and params.keys() == {"token"}:
        token = params["token"]
    elif isinstance(params, list) and len(params) == 1:
        token = params[0]
    return token if isinstance(token, str) else None
