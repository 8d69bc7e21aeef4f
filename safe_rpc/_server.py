"""``RPCServer``: registration and the one dispatch pipeline every transport uses.

The pipeline is written once, as a generator (``_flow``) that parses, validates, authorises
and encodes, and that *yields* each handler call it needs. ``dispatch`` drives it by calling
handlers inline; ``dispatch_async`` drives it by awaiting them under a deadline. Only "invoke
the handler" differs between the two (the pattern of httpx's ``auth_flow``), so no protocol
rule exists twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, overload

from ._context import Context, Principal
from ._exceptions import (
    DEFAULT_ERRORS,
    BatchTooLarge,
    ConfigError,
    ErrorRegistry,
    Forbidden,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    ParseError,
    RegistrationError,
    RemoteError,
    RequestTimeout,
    RequestTooLarge,
    ResponseTooLarge,
    RPCError,
    ServerBusy,
    Unauthenticated,
)
from ._json import JSONError, StrictJSON, dumps_strict
from ._limits import Limits
from ._protocol import NO_ID, Request, classify, error_response
from ._ratelimit import FailedAuthLimiter
from ._registry import MethodSpec, build_method

if TYPE_CHECKING:
    from ._http import ASGIApp

__all__ = ["Authenticator", "RPCServer", "log_safe"]

logger = logging.getLogger("safe_rpc")

F = TypeVar("F", bound=Callable[..., Any])


class Authenticator(Protocol):
    """What the dispatcher needs from a keyring (``safe_rpc.Keyring`` implements it)."""

    def verify(self, token: str) -> Principal:
        """Return the principal of a valid token; raise ``Unauthenticated`` otherwise."""
        ...

    def still_valid(self, principal: Principal) -> bool:
        """Re-check a principal verified earlier (expiry, revocation)."""
        ...


def log_safe(value: object, limit: int = 128) -> str:
    """A peer-supplied value made safe for one log line (SR-43).

    Truncated to ``limit`` characters, then ``ascii()``-escaped: CR, LF, ESC and every
    other control or non-ASCII character become visible escapes, so a method name cannot
    forge log lines or drive a terminal.
    """
    text = value if isinstance(value, str) else repr(value)
    suffix = "..." if len(text) > limit else ""
    return ascii(text[:limit]) + suffix


class _Invalid:
    """Auth state of a message whose credential was presented but did not verify."""

    __slots__ = ()


_INVALID: Final = _Invalid()
_Auth = Principal | None | _Invalid


class _Failure:
    """A handler call that ended in an error (kept apart from any value a handler returns)."""

    __slots__ = ("error",)

    def __init__(self, error: RPCError) -> None:
        self.error = error


class _Call:
    """One handler invocation the pipeline asks its driver to perform."""

    __slots__ = ("args", "kwargs", "spec")

    def __init__(self, spec: MethodSpec, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.spec = spec
        self.args = args
        self.kwargs = kwargs


_Flow = Generator[_Call, Any, bytes | None]


def _fixed(error: RPCError) -> bytes:
    return dumps_strict(error_response(error, None))


# Answers that never depend on the input are encoded once.
_PARSE_ERROR: Final = _fixed(ParseError())
_INVALID_REQUEST: Final = _fixed(InvalidRequest())
_BATCH_TOO_LARGE: Final = _fixed(BatchTooLarge())
_REQUEST_TOO_LARGE: Final = _fixed(RequestTooLarge())
_INTERNAL_ERROR: Final = _fixed(InternalError())


class RPCServer:
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
            (default: ``Limits.auth_failures_per_minute`` per minute, in memory).
    """

    def __init__(
        self,
        *,
        keyring: Authenticator | None = None,
        limits: Limits | None = None,
        reveal_forbidden: bool = False,
        errors: ErrorRegistry | None = None,
        auth_limiter: FailedAuthLimiter | None = None,
    ) -> None:
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigError("limits must be a safe_rpc.Limits instance")
        self.keyring = keyring
        self.limits = limits if limits is not None else Limits()
        self.reveal_forbidden = reveal_forbidden
        self.errors = errors if errors is not None else DEFAULT_ERRORS
        #: Failed authentications per caller source, shared by the transports (SR-40).
        self.auth_limiter = auth_limiter or FailedAuthLimiter(self.limits.auth_failures_per_minute)
        self._methods: dict[str, MethodSpec] = {}
        self._has_private = False
        self._inflight = 0
        self._json = StrictJSON(
            max_depth=self.limits.max_depth,
            max_object_members=self.limits.max_object_members,
            max_array_items=self.limits.max_array_items,
        )

    # -- registration -----------------------------------------------------------------------

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
    ) -> Callable[[F], F]: ...

    def method(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        scopes: Iterable[str] = (),
        public: bool = False,
    ) -> F | Callable[[F], F]:
        """Register a function as an RPC method; returns the function unchanged.

        Use as ``@rpc.method`` or ``@rpc.method(name=..., scopes=[...], public=...)``.

        Args:
            name: the wire name (default: the function's ``__name__``); dotted names
                such as ``"account.withdraw"`` namespace methods.
            scopes: every scope a caller's token must hold (exact string match).
            public: callable without a token. Public methods cannot require scopes.

        Raises:
            RegistrationError: at import time, for a reserved or malformed name, a duplicate,
                ``*args``/``**kwargs``, a missing annotation or an unsupported type.
        """

        def register(f: F) -> F:
            spec = build_method(f, name=name, public=public, scopes=scopes)
            if spec.name in self._methods:
                raise RegistrationError(f"method {spec.name!r} is already registered")
            self._methods[spec.name] = spec
            self._has_private = self._has_private or not spec.public
            return f

        return register(func) if func is not None else register

    @property
    def inflight(self) -> int:
        """Handler calls running right now under ``dispatch_async``."""
        return self._inflight

    @functools.cached_property
    def asgi(self) -> ASGIApp:
        """An ASGI 3 application serving this server over HTTP with default settings.

        See ``safe_rpc.ASGIApp`` for the options (allowed hosts, CORS, trusted proxies).
        """
        from ._http import ASGIApp  # the core does not need the HTTP layer to import

        return ASGIApp(self)

    @property
    def methods(self) -> dict[str, MethodSpec]:
        """A copy of the registry, name -> spec (for introspection and documentation)."""
        return dict(self._methods)

    # -- authentication (also used by transports that authenticate before the body) ------------

    def authenticate(self, token: str) -> Principal:
        """Verify a bearer token with the keyring.

        Raises:
            Unauthenticated: the token is invalid, or the server has no keyring. The same
                error for every reason; the reason is logged by the keyring.
        """
        if self.keyring is None:
            logger.info("token presented to a server without a keyring; rejected")
            raise Unauthenticated()
        return self.keyring.verify(token)

    def _resolve_auth(self, token: str | None, principal: Principal | None) -> _Auth:
        if principal is not None:
            if self.keyring is None or not self.keyring.still_valid(principal):
                return _INVALID
            return principal
        if token is None:
            return None
        try:
            return self.authenticate(token)
        except Unauthenticated:
            return _INVALID

    # -- dispatch -------------------------------------------------------------------------------

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

    def _guarded_flow(
        self,
        data: bytes,
        token: str | None,
        principal: Principal | None,
        transport: str,
        client: str | None,
    ) -> _Flow:
        # The last line of defence for "never raises for anything the peer sent": a bug in
        # the pipeline becomes one logged internal error, not an exception in a transport.
        try:
            return (yield from self._flow(data, token, principal, transport, client))
        except Exception:
            error_id = secrets.token_hex(8)
            logger.exception("safe_rpc pipeline failure; error_id=%s", error_id)
            return _INTERNAL_ERROR

    def _flow(
        self,
        data: bytes,
        token: str | None,
        principal: Principal | None,
        transport: str,
        client: str | None,
    ) -> _Flow:
        limits = self.limits
        if len(data) > limits.max_request_bytes:
            return _REQUEST_TOO_LARGE
        try:
            message = self._json.loads(data)
        except JSONError as exc:
            logger.debug("parse error: %s", exc)
            return _PARSE_ERROR  # section 5.1: id is null when it cannot be detected
        auth = self._resolve_auth(token, principal)
        if type(message) is not list:
            piece = yield from self._element(message, auth, transport, client, False)
            if piece is not None and len(piece) > limits.max_response_bytes:
                piece = self._encode_error(ResponseTooLarge(), _request_id(message))
            return piece
        # Section 6: "If the batch rpc call itself fails to be recognized as an valid JSON or
        # as an Array with at least one value, the response from the Server MUST be a single
        # Response object." A batch over the limit is refused whole, before any element runs.
        if not message:
            return _INVALID_REQUEST
        if len(message) > limits.max_batch:
            return _BATCH_TOO_LARGE
        pieces: list[bytes] = []
        budget = limits.max_response_bytes - 2  # the enclosing brackets
        for element in message:
            # Once the answer is over the response cap, later requests are not executed:
            # their work could never be delivered.
            piece = yield from self._element(element, auth, transport, client, budget < 0)
            if piece is None:
                continue
            budget -= len(piece) + 1
            if budget < 0:
                piece = self._encode_error(ResponseTooLarge(), _request_id(element))
            pieces.append(piece)
        # Section 6: "If there are no Response objects contained within the Response array
        # as it is to be sent to the client, the server MUST NOT return an empty Array and
        # should return nothing at all."
        if not pieces:
            return None
        return b"[" + b",".join(pieces) + b"]"

    def _element(
        self, element: Any, auth: _Auth, transport: str, client: str | None, exhausted: bool
    ) -> _Flow:
        request = classify(element)
        if type(request) is not Request:
            return self._encode_error(InvalidRequest(), request)
        spec = self._methods.get(request.method)
        denial = self._authorize(spec, request.method, auth)
        if denial is not None:
            # Section 4.1: "The Server MUST NOT reply to a Notification", errors included.
            return None if request.id is NO_ID else self._encode_error(denial, request.id)
        assert spec is not None  # _authorize denies unknown methods
        if exhausted:
            return (
                None if request.id is NO_ID else self._encode_error(ResponseTooLarge(), request.id)
            )
        try:
            kwargs = spec.bind(request.params)
        except InvalidParams as exc:
            return None if request.id is NO_ID else self._encode_error(exc, request.id)
        context = None
        if spec.context_param is not None:
            context = Context(
                principal=auth if isinstance(auth, Principal) else None,
                request_id=None if request.id is NO_ID else request.id,
                is_notification=request.id is NO_ID,
                method=spec.name,
                transport=transport,
                client=client,
            )
        args, kwargs = spec.call_args(kwargs, context)  # type: ignore[arg-type]
        outcome = yield _Call(spec, args, kwargs)
        if request.id is NO_ID:
            return None
        if type(outcome) is _Failure:
            return self._encode_error(outcome.error, request.id)
        try:
            if type(outcome) is not spec.plain_result:
                # The general path; a value whose type *is* the plain annotation (an int from
                # `-> int`, a str from `-> str`) is already its own JSON form.
                outcome = spec.result_adapter.dump_python(outcome, mode="json", warnings="error")
            return dumps_strict({"jsonrpc": "2.0", "result": outcome, "id": request.id})
        except Exception as exc:  # wrong type for the annotation, NaN, huge int, surrogate
            return self._encode_error(self._internal_error(spec.name, exc), request.id)

    def _authorize(self, spec: MethodSpec | None, name: str, auth: _Auth) -> RPCError | None:
        # Section 6 of SPEC.md: deny by default, decided per element, nothing leaks.
        if auth is _INVALID:
            return Unauthenticated()  # a bad credential never downgrades to anonymous
        if spec is not None and spec.public:
            return None
        if auth is None:
            # Anonymous callers cannot tell a protected method from a missing one. A server
            # with no protected methods at all has nothing to hide: plain -32601.
            if spec is None and not self._has_private:
                return MethodNotFound()
            return Unauthenticated()
        if spec is None:
            return MethodNotFound()
        assert isinstance(auth, Principal)
        if spec.scopes <= auth.scopes:
            return None
        logger.info("caller %s lacks a scope for %s", log_safe(auth.subject), log_safe(spec.name))
        return Forbidden() if self.reveal_forbidden else MethodNotFound()

    def _encode_error(self, error: RPCError, id: Any) -> bytes:
        try:
            return dumps_strict(error_response(error, id))
        # An application error whose data cannot be encoded: JSONError, or pydantic's
        # serialisation error from a Data model. Either way only this element fails.
        except Exception as exc:
            return dumps_strict(error_response(self._internal_error("(error data)", exc), id))

    def _internal_error(self, name: str, exc: BaseException) -> InternalError:
        # SR-42: the caller gets a random id; the log gets the id, the method and the
        # traceback. Neither the exception text nor anything the caller sent goes out.
        error_id = secrets.token_hex(8)
        logger.error("method %s failed; error_id=%s", log_safe(name), error_id, exc_info=exc)
        return InternalError(data={"error_id": error_id})

    def _failure(self, spec: MethodSpec, exc: Exception) -> _Failure:
        if isinstance(exc, RPCError) and not isinstance(exc, RemoteError):
            # A deliberate, declared error: its code, fixed message and validated data.
            return _Failure(exc)
        # Anything else, including a RemoteError re-raised from another server (its data
        # is foreign and unvalidated), is an internal error.
        return _Failure(self._internal_error(spec.name, exc))

    # -- drivers -------------------------------------------------------------------------------

    def _run_sync(self, call: _Call) -> Any:
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

    async def _run_async(self, call: _Call) -> Any:
        if self._inflight >= self.limits.max_inflight:
            return _Failure(ServerBusy())
        self._inflight += 1
        try:
            return await self._invoke(call)
        finally:
            self._inflight -= 1

    async def _invoke(self, call: _Call) -> Any:
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
                return _Failure(RequestTimeout())
            return self._failure(spec, exc)  # the handler's own TimeoutError
        except Exception as exc:
            return self._failure(spec, exc)


def _request_id(element: Any) -> Any:
    request = classify(element)
    return request.id if type(request) is Request and request.id is not NO_ID else None
