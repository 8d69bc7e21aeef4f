"""What a handler may learn about its call: the verified caller and the request."""

from __future__ import annotations

import contextvars
import dataclasses
import types
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

__all__ = ["EMPTY_STATE", "EVENT_SOURCE", "Context", "Principal"]

EMPTY_STATE: Final[Mapping[str, Any]] = types.MappingProxyType({})

#: Set by the transport around a running subscription: channel -> async iterator of items.
#: A context variable, so the pipeline needs no parameter for a feature only streams use.
EVENT_SOURCE: contextvars.ContextVar[Callable[[str], AsyncIterator[Any]] | None] = (
    contextvars.ContextVar("safe_rpc_event_source", default=None)
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """An authenticated caller, built only from a token whose signature and claims verified.

    Attributes:
        subject: the token's ``sub`` claim (use it for object-level checks in handlers:
            safe_rpc decides *which methods* a caller may use, your handler decides *which
            objects*).
        scopes: the token's ``scope`` claim, split on spaces.
        claims: every verified claim of the token (read-only).
        expires_at: the token's ``exp`` (seconds since the epoch); transports that keep a
            connection open re-check it on every call.
        token_id: the token's ``jti``.
        key_id: the ``kid`` of the key that verified the token.
    """

    subject: str
    scopes: frozenset[str]
    claims: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    expires_at: float | None = None
    token_id: str | None = None
    key_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Injected into a handler that declares a parameter annotated ``Context``.

    It never comes from the wire: the caller cannot set or forge any of it.

    Attributes:
        principal: the verified caller, or None for an anonymous call of a public method.
        request_id: the JSON-RPC id of this call (None for a notification or ``"id": null``).
        is_notification: True when no response will be sent.
        method: the registered name that was called.
        transport: ``"inprocess"``, ``"http"``, ``"tcp"`` or ``"websocket"``.
        client: the peer address as the transport saw it, when there is one.
        state: the mapping the server's ``lifespan`` yielded in this process (database
            pools, clients); empty without a lifespan.
    """

    principal: Principal | None
    request_id: str | int | float | None
    is_notification: bool
    method: str
    transport: str = "inprocess"
    client: str | None = None
    state: Mapping[str, Any] = dataclasses.field(default_factory=lambda: EMPTY_STATE)

    def events(self, channel: str) -> AsyncIterator[Any]:
        """The items published on ``channel`` from now on (``await rpc.publish(...)``), as an
        async iterator; only inside a subscription (``@rpc.subscription``).

        Raises:
            RuntimeError: called outside a running subscription.
        """
        source = EVENT_SOURCE.get()
        if source is None:
            raise RuntimeError("ctx.events() works only inside a running @rpc.subscription")
        return source(channel)
