"""``RPCServer``: registration on top of the core pipeline, and its asyncio driver."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .._auth.limiter import FailedAuthLimiter
from .._auth.shared_limiter import StoreAuthLimiter
from .._auth.tokens import Keyring
from .._core.admission import Deferred
from .._core.authn import Authenticator
from .._core.context import Principal
from .._core.errors import (
    ErrorRegistry,
    RegistrationError,
    RequestTimeout,
    RPCError,
    ServerBusy,
)
from .._core.limits import Limits
from .._core.logs import log_safe
from .._core.pipeline import Call, Failure, Pipeline
from .._core.registry import MethodSpec, build_method
from .._discovery import Discovery
from .._ops import CallRecord, Lifespan, ObserverSet, running
from .._ops.health import Readiness
from .._store.admission import Rate, StoreAdmission, parse_rate
from .._store.base import Store, StoreUnavailable
from .._store.memory import MemoryStore
from .._store.revocations import RevocationView
from .._transports.connection import PendingBudget
from .events import (
    EventBus,
    InProcessEventBus,
    StoreEventBus,
    bus_for,
    check_channel,
    decode_events,
    encode_event,
)
from .subscriptions import StreamSpec, register_subscription

if TYPE_CHECKING:
    from .._transports.http import ASGIApp

__all__ = ["RPCServer"]

logger = logging.getLogger("safe_rpc")

F = TypeVar("F", bound=Callable[..., Any])


class RPCServer(Pipeline):
    """A set of registered methods and the policy that guards them.

    Example:
        ```python
        from safe_rpc import RPCServer

        rpc = RPCServer()

        @rpc.method(public=True)
        def add(a: int, b: int) -> int:
            return a + b

        rpc.dispatch(b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}')
        # b'{"jsonrpc":"2.0","result":5,"id":1}'
        ```

    Args:
        keyring: verifies bearer tokens (``safe_rpc.Keyring``); without one, only public
            methods can ever be called.
        limits: every resource limit (``safe_rpc.Limits()`` by default).
        reveal_forbidden: answer -32003 instead of -32601 when an authenticated caller lacks
            a scope (off by default: methods outside a caller's scopes do not exist for it).
        errors: the registry that maps error codes to classes (application errors register
            themselves in the default one).
        auth_limiter: counts failed authentications per client address for the transports
            (default: ``Limits.auth_failures_per_minute`` per minute, in the store).
        store: where shared security state lives: revocations (the keyring is switched to
            it), failed-authentication counts, quotas, single-use token ids. Default: a
            ``MemoryStore`` (this process only); ``SQLiteStore`` for processes on one host,
            ``RedisStore`` for a fleet.
        rate: a quota on every call, per principal (per client address when anonymous),
            e.g. ``"600/minute"``; each batch element counts once; over it, -32004.
        quota_failure: ``"closed"`` (default): when the store cannot be reached, calls that
            need it (quotas, single-use tokens) get -32009; ``"open"``: they are admitted.
        title, version: the ``info`` of the OpenRPC document ``rpc.discover`` answers.
        discover: answer the reserved ``rpc.discover`` (on by default; each caller sees only
            the methods it may call). ``False`` makes it an unknown method like any other.
        observers: callables that receive a ``safe_rpc.CallRecord`` per finished call
            (never params or results); one that raises is logged and changes nothing.
        lifespan: called with this server, returns an async context manager entered in
            each serving process before it serves and left after it drained; the mapping
            it yields is ``ctx.state`` in handlers.
        readiness: a sync or async callable, True when the service's dependencies answer
            (a shared store's ``ping``); ``GET /readyz`` asks it. Default: always ready.
    """

    def __init__(
        self,
        *,
        keyring: Authenticator | None = None,
        limits: Limits | None = None,
        reveal_forbidden: bool = False,
        errors: ErrorRegistry | None = None,
        auth_limiter: FailedAuthLimiter | StoreAuthLimiter | None = None,
        store: Store | None = None,
        rate: str | None = None,
        quota_failure: str = "closed",
        title: str = "safe_rpc service",
        version: str = "0.0.0",
        discover: bool = True,
        observers: Iterable[Callable[[CallRecord], None]] = (),
        lifespan: Lifespan | None = None,
        readiness: Readiness | None = None,
    ) -> None:
        if quota_failure not in ("closed", "open"):
            raise RegistrationError('quota_failure must be "closed" or "open"')
        if store is not None and not isinstance(store, Store):
            raise RegistrationError("store must be a MemoryStore, SQLiteStore or RedisStore")
        self._store_given = store is not None
        self.store: Store = store if store is not None else MemoryStore()
        self._default_auth_limiter = auth_limiter is None
        super().__init__(limits=limits, reveal_forbidden=reveal_forbidden, errors=errors)
        self.keyring = keyring  # after the limits: attaching it to the store reads them
        #: Builds and caches the ``rpc.discover`` document per caller view (SECURITY.md).
        self.discovery = Discovery(self._methods.values, title=title, version=version)
        if discover:
            self.discover_answer = self.discovery.answer
        #: The observers; transports report events outside calls to it (``ops.event``).
        self.ops = ObserverSet(observers)
        self._emit = self.ops.emit if self.ops else None
        self.lifespan = lifespan
        #: Asked by ``GET /readyz`` unless the ``ASGIApp`` was given its own check; by
        #: default, whether the store answers within ``Limits.store_timeout``.
        self.readiness: Readiness = readiness if readiness is not None else self.store_ready
        #: Failed authentications per caller source, shared by the transports (SR-40).
        self.auth_limiter = auth_limiter or self._default_limiter()
        self._inflight = 0
        self._rates: dict[str, Rate] = {}
        self._checks = StoreAdmission(
            self.store,
            rate=parse_rate(rate) if rate is not None else None,
            method_rates=self._rates,
            fail_open=quota_failure == "open",
            timeout=self.limits.store_timeout,
            view=self._revocation_view,
            leeway=lambda: float(getattr(self._keyring, "leeway", 0.0)),
        )
        self.admission = self._checks
        # Streams (WebSocket, framed TCP): subscriptions, events, and the bytes of answers
        # waiting to be written across every connection of this process.
        self._streams: dict[str, StreamSpec] = {}
        #: Carries ``publish`` to ``ctx.events``: Redis pub/sub on a ``RedisStore`` (every
        #: process), else this process only; replace it with any ``EventBus``.
        self.event_bus: EventBus = bus_for(self.store)
        self.pending_budget = PendingBudget(self.limits.max_pending_bytes)

    def use_store(self, store: Store) -> None:
        """Switch this server (its keyring, quotas, single-use ids and, unless one was
        given, its failed-authentication limiter) to ``store``; ``safe-rpc serve --store``
        calls it on the server it imported. Call it before serving."""
        if not isinstance(store, Store):
            raise RegistrationError("store must be a MemoryStore, SQLiteStore or RedisStore")
        self.store = store
        self._store_given = True
        self._checks.store = store
        if isinstance(self.event_bus, InProcessEventBus | StoreEventBus):  # not the user's
            self.event_bus = bus_for(store)
        if self._default_auth_limiter:
            self.auth_limiter = self._default_limiter()
        self.keyring = self._keyring  # re-attach its revocations

    def _default_limiter(self) -> FailedAuthLimiter | StoreAuthLimiter:
        per_minute = self.limits.auth_failures_per_minute
        if self.store.shared:
            return StoreAuthLimiter(self.store, per_minute)
        return FailedAuthLimiter(per_minute)

    @property
    def keyring(self) -> Authenticator | None:
        """Verifies bearer tokens; a ``Keyring`` set here reads revocations from the store."""
        return self._keyring

    @keyring.setter
    def keyring(self, keyring: Authenticator | None) -> None:
        if self._store_given and isinstance(keyring, Keyring):
            keyring.use_store(
                self.store,
                staleness=self.limits.revocation_staleness,
                max_stale=self.limits.revocation_max_stale,
            )
        self._keyring = keyring

    def _revocation_view(self) -> RevocationView | None:
        keyring = self._keyring
        return keyring._revocations if type(keyring) is Keyring else None

    async def store_ready(self) -> bool:
        """True when the store answers within ``Limits.store_timeout`` (for a readiness
        probe such as ``/readyz``)."""
        try:
            async with asyncio.timeout(self.limits.store_timeout):
                await self.store.ping_async()
        except (StoreUnavailable, TimeoutError):
            return False
        return True

    async def aclose(self) -> None:
        """Stop this server's background work (revocation poller, pending store writes)
        and close the store. ``safe_rpc.serve`` calls it at shutdown."""
        view = self._revocation_view()
        if view is not None:
            await view.aclose()
        if isinstance(self.auth_limiter, StoreAuthLimiter):
            await self.auth_limiter.aclose()
        await self.store.aclose()

    @overload
    def method(self, func: F, /) -> F: ...
    @overload
    def method(
        self,
        /,
        *,
        name: str | None = None,
        scopes: Iterable[str] = (),
        public: bool = False,
        errors: Iterable[type[RPCError]] = (),
        rate: str | None = None,
    ) -> Callable[[F], F]: ...

    def method(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        scopes: Iterable[str] = (),
        public: bool = False,
        errors: Iterable[type[RPCError]] = (),
        rate: str | None = None,
    ) -> F | Callable[[F], F]:
        """Register a function as an RPC method; returns the function unchanged.

        Use as ``@rpc.method`` or ``@rpc.method(name=..., scopes=[...], public=...)``.

        Args:
            name: the wire name (default: the function's ``__name__``); dotted names
                such as ``"account.withdraw"`` namespace methods.
            scopes: every scope a caller's token must hold (exact string match).
            public: callable without a token. Public methods cannot require scopes.
            errors: the application errors (``RPCError`` subclasses) the method may raise;
                ``rpc.discover`` lists them and generated clients raise them by class.
            rate: a quota on this method per principal (per client address when
                anonymous), e.g. ``"5/minute"``, counted in the server's store; over it the
                caller gets -32004 with ``data.retry_after`` (whole seconds).

        Raises:
            RegistrationError: at import time, for a reserved or malformed name, a duplicate,
                ``*args``/``**kwargs``, a missing annotation or an unsupported type.
        """

        quota = parse_rate(rate) if rate is not None else None

        def register(f: F) -> F:
            spec = build_method(f, name=name, public=public, scopes=scopes, errors=errors)
            if spec.name in self._methods:
                raise RegistrationError(f"method {spec.name!r} is already registered")
            self._methods[spec.name] = spec
            if quota is not None:
                self._rates[spec.name] = quota
            self._has_private = self._has_private or not spec.public
            return f

        return register(func) if func is not None else register

    def add_observer(self, observer: Callable[[CallRecord], None]) -> None:
        """Install one more observer (``safe-rpc serve --access-log/--metrics`` use this)."""
        self.ops.add(observer)
        self._emit = self.ops.emit

    def running(self) -> AbstractAsyncContextManager[None]:
        """Enter this server's lifespan (a no-op without one) for the block's duration.

        ``safe-rpc serve`` and ``ASGIApp`` call it; call it yourself when you drive
        ``dispatch_async`` from your own event loop.

        Raises:
            ConfigError: the lifespan failed at startup (one line naming the exception).
        """
        return running(self, self.lifespan)

    @overload
    def subscription(self, func: F, /) -> F: ...
    @overload
    def subscription(
        self, /, *, name: str | None = None, scopes: Iterable[str] = (), public: bool = False
    ) -> Callable[[F], F]: ...

    def subscription(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        scopes: Iterable[str] = (),
        public: bool = False,
    ) -> F | Callable[[F], F]:
        """Register an async generator function as a subscription (WebSocket, framed TCP).

        ``async def ticker(ctx: Context, symbol: str) -> AsyncIterator[Price]``: params are
        validated like a method's, the call answers a subscription id, and each item is
        sent as an ``rpc.subscription`` notification, serialised through the yield type.
        Over plain HTTP the name answers -32601. Same options as ``method``.
        """

        def register(f: F) -> F:
            return register_subscription(self, f, name=name, scopes=scopes, public=public)

        return register(func) if func is not None else register

    async def publish(self, channel: str, item: Any) -> None:
        """Send ``item`` (JSON-able: models, dataclasses, datetimes work) to every
        subscription reading ``ctx.events(channel)`` now."""
        await self.event_bus.publish(check_channel(channel), encode_event(item))

    def event_source(self, channel: str) -> AsyncIterator[Any]:
        """The items published on ``channel`` (what ``ctx.events`` returns)."""
        return decode_events(self.event_bus.subscribe(check_channel(channel)), self._json)

    @property
    def inflight(self) -> int:
        """Handler calls running right now under ``dispatch_async``."""
        return self._inflight

    @functools.cached_property
    def asgi(self) -> ASGIApp:
        """An ASGI 3 application serving this server over HTTP with default settings.

        See ``safe_rpc.ASGIApp`` for the options (allowed hosts, CORS, trusted proxies).
        """
        from .._transports.http import ASGIApp  # imported on first use only

        return ASGIApp(self)

    @property
    def methods(self) -> dict[str, MethodSpec]:
        """A copy of the registry, name -> spec (for introspection and documentation)."""
        return dict(self._methods)

    # -- authentication (also used by transports that authenticate before the body) ------------

    def dispatch(
        self,
        data: bytes,
        *,
        token: str | None = None,
        principal: Principal | None = None,
        transport: str = "inprocess",
        client: str | None = None,
    ) -> bytes | None:
        """Handle one message (request, notification or batch) given as raw bytes.

        Handlers run inline in the calling thread; async handlers run to completion in a
        private event loop. Use ``dispatch_async`` inside an event loop: it also enforces
        ``Limits.call_timeout``.

        Args:
            data: the message bytes exactly as received.
            token: the caller's bearer token, if any.
            principal: a caller already authenticated by the transport (re-checked for
                expiry and revocation); takes precedence over ``token``.
            transport: reported to handlers in ``Context.transport``.
            client: the peer address, reported in ``Context.client``.

        Returns:
            The response bytes, or None when no response is due (notifications only).
            Never raises for anything the peer sent.
        """
        flow = self._guarded_flow(data, token, principal, transport, client)
        try:
            call = next(flow)
            while True:
                call = flow.send(self._run_sync(call))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def dispatch_async(
        self,
        data: bytes,
        *,
        token: str | None = None,
        principal: Principal | None = None,
        transport: str = "inprocess",
        client: str | None = None,
    ) -> bytes | None:
        """Like ``dispatch``, for event loops: handlers are awaited under the call deadline.

        Sync handlers run in a worker thread so they never block the loop; async handlers
        are cancelled at ``Limits.call_timeout`` and answered with -32002. Calls beyond
        ``Limits.max_inflight`` in the process are answered -32009.
        """
        flow = self._guarded_flow(data, token, principal, transport, client)
        try:
            call = next(flow)
            while True:
                call = flow.send(await self._run_async(call))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # -- the pipeline ---------------------------------------------------------------------------

    # -- the asyncio driver ---------------------------------------------------------------------

    async def _run_async(self, call: Call | Deferred) -> Any:
        if not isinstance(call, Call):
            return await call.run_async()  # a store operation (quota, single-use token)
        if self._inflight >= self.limits.max_inflight:
            return Failure(ServerBusy())
        self._inflight += 1
        try:
            return await self._invoke(call)
        finally:
            self._inflight -= 1

    async def _invoke(self, call: Call) -> Any:
        spec = call.spec
        deadline = asyncio.timeout(self.limits.call_timeout)
        try:
            async with deadline:
                if spec.is_async:
                    return await spec.func(*call.args, **call.kwargs)
                # Sync handlers may block (I/O, CPU): keep them off the event loop. A thread
                # cannot be cancelled; its answer is dropped once the deadline passed.
                return await asyncio.to_thread(spec.func, *call.args, **call.kwargs)
        except TimeoutError as exc:
            if deadline.expired():
                logger.warning("method %s exceeded its deadline; cancelled", log_safe(spec.name))
                return Failure(RequestTimeout())
            return self._failure(spec, exc)  # the handler's own TimeoutError
        except Exception as exc:
            return self._failure(spec, exc)

    def _run_sync(self, call: Call | Deferred) -> Any:
        if not isinstance(call, Call):
            return call.run_sync()
        spec = call.spec
        if not spec.is_async:
            try:
                return spec.func(*call.args, **call.kwargs)
            except Exception as exc:
                return self._failure(spec, exc)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._invoke(call))
        return self._failure(
            spec,
            RuntimeError(
                f"async method {spec.name!r} reached through RPCServer.dispatch inside a "
                "running event loop; use dispatch_async there"
            ),
        )
