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
from .._core.pipeline import Batch, Call, Failure, Pipeline, _Flow
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
from .threads import NOT_RUN, Job, ThreadPool, raised

if TYPE_CHECKING:
    from .._transports.http import ASGIApp

__all__ = ["RPCServer"]

logger = logging.getLogger("safe_rpc")

F = TypeVar("F", bound=Callable[..., Any])

# A batch's sync job still running after this long has calls that block: more threads
# join it. Fast calls finish well inside it and cost one thread hand-off for the batch.
_WIDEN_AFTER = 0.002


class _OnDemand:
    """The outcomes of a batch's calls for the sync driver: call i runs when item i is read."""

    __slots__ = ("_calls", "_run")

    def __init__(self, calls: list[Call], run: Callable[[Call], Any]) -> None:
        self._calls = calls
        self._run = run

    def __getitem__(self, index: int) -> Any:
        return self._run(self._calls[index])


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
        self._pool = ThreadPool(self.limits.max_threads)
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
        # Streams (WebSocket, framed TCP): subscriptions, events, and the bytes of answers
        # waiting to be written across every connection of this process.
        self._streams: dict[str, StreamSpec] = {}
        #: Carries ``publish`` to ``ctx.events``: Redis pub/sub on a ``RedisStore`` (every
        #: process), else this process only; replace it with any ``EventBus``.
        self.event_bus: EventBus = bus_for(self.store)
        self.pending_budget = PendingBudget(self.limits.max_pending_bytes)
        self._refresh_fast_path()

    def _refresh_fast_path(self) -> None:
        """Decide whether ``dispatch``/``dispatch_async`` may skip the generator pipeline,
        and whether the pipeline needs the store's admission checks at all.

        The fused path runs the very same steps as ``_flow`` (``_start``, ``_prepare``,
        ``_finish``), only without driving a generator. Any feature that needs per-call work
        must make this false: anything that wraps or extends ``_flow`` (observers, quotas,
        single-use tokens, shared revocations, built-in methods, subscriptions) is reached
        only through the general pipeline. Deliberately conservative: the fused path is for
        the plain default configuration (no keyring, no store given, no rate) only. Called
        again after registration, ``add_observer``, ``use_store`` and a new keyring.
        """
        checks = getattr(self, "_checks", None)
        if checks is None:  # still in __init__
            return
        # Any keyring may verify single-use tokens (and, with a store, shared revocations);
        # a given store or a rate means quotas: every such call goes through the admission.
        needs_admission = (
            self._store_given
            or checks.rate is not None
            or bool(self._rates)
            or self._keyring is not None
        )
        self.admission = checks if needs_admission else None
        self._plain = (
            type(self)._flow is Pipeline._flow
            and self._emit is None
            and self.admission is None
            and not self._streams
        )

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
        self.keyring = self._keyring  # re-attach its revocations (and refresh the fast path)

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
        self._refresh_fast_path()

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
        blocking: bool = True,
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
        blocking: bool = True,
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
            blocking: for a sync function only. True (the default): under
                ``dispatch_async`` it runs on the server's bounded thread pool, so it may
                block. False: it is declared never to block (no I/O, no lock waits, short
                CPU work) and runs inline on the event loop, which saves the thread hand-off
                (tens of microseconds) but cannot be interrupted by ``call_timeout``; a
                handler that does block then stalls every connection of the process.
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
            spec = build_method(
                f, name=name, public=public, scopes=scopes, blocking=blocking, errors=errors
            )
            if spec.name in self._methods:
                raise RegistrationError(f"method {spec.name!r} is already registered")
            self._methods[spec.name] = spec
            if quota is not None:
                self._rates[spec.name] = quota
            self._has_private = self._has_private or not spec.public
            self._refresh_fast_path()
            return f

        return register(func) if func is not None else register

    def add_observer(self, observer: Callable[[CallRecord], None]) -> None:
        """Install one more observer (``safe-rpc serve --access-log/--metrics`` use this)."""
        self.ops.add(observer)
        self._emit = self.ops.emit
        self._refresh_fast_path()

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
            register_subscription(self, f, name=name, scopes=scopes, public=public)
            self._refresh_fast_path()  # subscriptions only ever take the general pipeline
            return f

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
        step = self._begin(data, token, principal, transport, client)
        if type(step) is Call:
            return self._end(step, self._run_sync(step))
        if step is None or type(step) is bytes:
            return step
        flow: _Flow = step  # type: ignore[assignment]
        try:
            call = next(flow)
            while True:
                if isinstance(call, Batch):  # each call runs, in order, when the pipeline reads it
                    call = flow.send(_OnDemand(call.calls, self._run_sync))
                else:  # a Call, or a store operation (quota, single-use token)
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

        Sync handlers run on the server's bounded thread pool (``Limits.max_threads``) so
        they never block the loop, unless registered with ``blocking=False``; async
        handlers are cancelled at ``Limits.call_timeout`` and answered with -32002. Calls
        beyond ``Limits.max_inflight`` in the process, and sync calls while every pool
        thread is held, are answered -32009. The elements of a batch run concurrently (at
        most ``Limits.max_inflight_per_connection`` at once) under one ``call_timeout``
        for the whole message; answers keep the request order.
        """
        step = self._begin(data, token, principal, transport, client)
        if type(step) is Call:
            return self._end(step, await self._run_async(step))
        if step is None or type(step) is bytes:
            return step
        flow: _Flow = step  # type: ignore[assignment]
        try:
            call = next(flow)
            while True:
                if isinstance(call, Batch):
                    call = flow.send(await self._run_batch(call.calls))
                else:  # a Call, or a store operation (quota, single-use token)
                    call = flow.send(await self._run_async(call))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _begin(
        self,
        data: bytes,
        token: str | None,
        principal: Principal | None,
        transport: str,
        client: str | None,
    ) -> bytes | Call | _Flow | None:
        """The answer, the one Call of a plain single request, or the flow to drive."""
        if not self._plain:
            return self._guarded_flow(data, token, principal, transport, client)
        # The fused path: the same steps as Pipeline._flow, without driving a generator.
        try:
            step = self._start(data, token, principal, transport, client)
        except Exception:
            return self._pipeline_failure()
        if type(step) is Batch:
            return self._guarded(self._batch(step))
        return step  # type: ignore[return-value]

    def _end(self, call: Call, outcome: Any) -> bytes | None:
        try:
            return self._finish_single(call, outcome)
        except Exception:
            return self._pipeline_failure()

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
        if not spec.is_async:
            if not spec.blocking:
                return self._run_sync(call)
            return await self._in_thread(call)
        deadline = asyncio.timeout(self.limits.call_timeout)
        try:
            async with deadline:
                return await spec.func(*call.args, **call.kwargs)
        except TimeoutError as exc:
            if deadline.expired():
                return self._timed_out(spec)
            return self._failure(spec, exc)  # the handler's own TimeoutError
        except Exception as exc:
            return self._failure(spec, exc)

    def _timed_out(self, spec: MethodSpec) -> Failure:
        logger.warning("method %s exceeded its deadline; cancelled", log_safe(spec.name))
        return Failure(RequestTimeout())

    async def _in_thread(self, call: Call) -> Any:
        # A thread cannot be cancelled: past the deadline its answer is dropped and it keeps
        # its pool slot until it returns (SECURITY.md states that residual risk).
        job = Job([(call.spec.func, call.args, call.kwargs)])
        done = self._pool.submit(job)
        if done is None:
            return Failure(ServerBusy())
        try:
            async with asyncio.timeout(self.limits.call_timeout):
                await done
        except TimeoutError:
            job.abandon()
            return self._timed_out(call.spec)
        finally:
            job.abandon()  # also when this task itself is cancelled
        return self._outcome(call.spec, job.results[0])

    def _outcome(self, spec: MethodSpec, slot: Any) -> Any:
        exc = raised(slot)
        if exc is None:
            return slot
        if isinstance(exc, Exception):
            return self._failure(spec, exc)
        raise exc  # KeyboardInterrupt, SystemExit from a handler thread: not ours to eat

    async def _run_batch(self, calls: list[Call]) -> list[Any]:
        """Run the calls of one batch concurrently under one deadline; outcomes in order.

        Async calls are tasks (at most ``max_inflight_per_connection`` running at once);
        the sync calls that may block go to the pool as one job, spread over more threads
        only if it is still running a moment later; calls declared non-blocking run inline.
        """
        loop = asyncio.get_running_loop()
        limits = self.limits
        outcomes: list[Any] = [None] * len(calls)
        sync: list[int] = []
        waits: list[asyncio.Future[Any]] = []
        tasks: dict[int, asyncio.Task[Any]] = {}
        # A batch never pushes itself past the process cap: it runs at most as many async
        # calls at once as there is room for when it starts (at least one).
        room = limits.max_inflight - self._inflight - 1
        slots = asyncio.Semaphore(max(1, min(limits.max_inflight_per_connection, room)))
        for index, call in enumerate(calls):
            spec = call.spec
            if spec.is_async:
                tasks[index] = loop.create_task(self._bounded(call, slots))
            elif spec.blocking:
                sync.append(index)
            else:
                outcomes[index] = self._run_sync(call)
        waits.extend(tasks.values())
        job = Job([(calls[i].spec.func, calls[i].args, calls[i].kwargs) for i in sync])
        widen: asyncio.TimerHandle | None = None
        held = 0  # the job counts as one call in flight: it holds one thread to begin with
        if sync:
            done = self._pool.submit(job) if self._inflight < limits.max_inflight else None
            if done is None:
                for index in sync:
                    outcomes[index] = Failure(ServerBusy())
            else:
                held = 1
                self._inflight += 1
                waits.append(done)
                if len(sync) > 1:
                    spread = min(len(sync), limits.max_inflight_per_connection) - 1
                    widen = loop.call_later(_WIDEN_AFTER, self._pool.widen, job, spread)
        try:
            if waits:
                await asyncio.wait(waits, timeout=limits.call_timeout)
        finally:
            job.abandon()
            self._inflight -= held
            if widen is not None:
                widen.cancel()
            late = [task for task in tasks.values() if not task.done()]
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        for index, task in tasks.items():
            if task.cancelled():
                outcomes[index] = self._timed_out(calls[index].spec)
            else:
                outcomes[index] = task.result()
        for slot, index in zip(job.results, sync, strict=True):
            if outcomes[index] is not None:
                continue  # refused: ServerBusy
            spec = calls[index].spec
            outcomes[index] = (
                self._timed_out(spec) if slot is NOT_RUN else self._outcome(spec, slot)
            )
        return outcomes

    async def _bounded(self, call: Call, slots: asyncio.Semaphore) -> Any:
        # One async element of a batch: it waits for one of the message's slots, then counts
        # as in flight only while it runs.
        async with slots:
            if self._inflight >= self.limits.max_inflight:
                return Failure(ServerBusy())
            self._inflight += 1
            try:
                return await call.spec.func(*call.args, **call.kwargs)
            except Exception as exc:
                return self._failure(call.spec, exc)
            finally:
                self._inflight -= 1

    def _run_sync(self, call: Call | Deferred) -> Any:
        if not isinstance(call, Call):
            return call.run_sync()  # a store operation (quota, single-use token)
        spec = call.spec
        if not spec.is_async:  # inline, in the calling thread
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
