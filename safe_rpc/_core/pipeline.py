"""The one dispatch pipeline every transport uses, with no I/O.

The pipeline is written once, as a generator (``_flow``) that parses, validates, authorises
and encodes, and that *yields* each handler call it needs. ``RPCServer`` (in
``safe_rpc._server``) drives it: ``dispatch`` by calling handlers inline, ``dispatch_async``
by awaiting them under a deadline. Only "invoke the handler" differs between the two (the
pattern of httpx's ``auth_flow``), so no protocol rule exists twice.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Generator, Mapping
from time import perf_counter
from typing import Any, Final

from .admission import Admission, Deferred
from .authn import Authenticator
from .context import EMPTY_STATE, Context, Principal
from .errors import (
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
    RemoteError,
    RequestTooLarge,
    ResponseTooLarge,
    RPCError,
    Unauthenticated,
)
from .json import JSONError, dumps_strict, error_bytes, result_bytes
from .limits import Limits
from .logs import log_safe
from .protocol import DISCOVER_METHOD, NO_ID, Request, classify, error_response
from .registry import MethodSpec

__all__ = ["Batch", "Call", "Failure", "Pipeline"]

logger = logging.getLogger("safe_rpc")


class _Invalid:
    """Auth state of a message whose credential was presented but did not verify."""

    __slots__ = ()


class _Refused:
    """Auth state of a message refused as a whole (a single-use token presented again)."""

    __slots__ = ("error",)

    def __init__(self, error: RPCError) -> None:
        self.error = error


class _Admitting:
    """A parsed message waiting for the admission checks (single-use tokens, quotas)."""

    __slots__ = ("auth", "message")

    def __init__(self, message: Any, auth: _Auth) -> None:
        self.message = message
        self.auth = auth


_INVALID: Final = _Invalid()
_Auth = Principal | None | _Invalid | _Refused


class Failure:
    """A handler call that ended in an error (kept apart from any value a handler returns)."""

    __slots__ = ("error",)

    def __init__(self, error: RPCError) -> None:
        self.error = error


class Call:
    """One handler invocation the pipeline asks its driver to perform.

    ``id`` is the request id, or ``NO_ID`` for a notification.
    """

    __slots__ = ("args", "id", "kwargs", "spec")

    def __init__(
        self, spec: MethodSpec, args: list[Any], kwargs: dict[str, Any], id: Any = NO_ID
    ) -> None:
        self.spec = spec
        self.args = args
        self.kwargs = kwargs
        self.id = id


class Batch:
    """The elements of a batch, prepared: each one a final answer (bytes or None) or a Call.

    Yielded to the driver once with every call of the batch (``calls``, in order); the
    driver sends back their outcomes in the same order: a list, or a sequence that makes
    call i when its item i is read (see ``Pipeline._batch``).
    """

    __slots__ = ("calls", "elements", "steps")

    def __init__(self, elements: list[Any], steps: list[bytes | Call | _Admit | None]) -> None:
        self.elements = elements
        self.steps = steps
        self.calls = [step for step in steps if type(step) is Call]


class _Admit:
    """An element that passed authorisation and waits for the admission checks (quotas)."""

    __slots__ = ("request", "spec")

    def __init__(self, request: Request, spec: MethodSpec) -> None:
        self.request = request
        self.spec = spec


_Flow = Generator[Call | Batch | Deferred, Any, bytes | None]
_NO_ARGS: Final[list[Any]] = []  # shared, never mutated: handlers get *args unpacked


def _fixed(error: RPCError) -> bytes:
    return dumps_strict(error_response(error, None))


# Answers that never depend on the input are encoded once.
_PARSE_ERROR: Final = _fixed(ParseError())
_INVALID_REQUEST: Final = _fixed(InvalidRequest())
_BATCH_TOO_LARGE: Final = _fixed(BatchTooLarge())
_REQUEST_TOO_LARGE: Final = _fixed(RequestTooLarge())
_INTERNAL_ERROR: Final = _fixed(InternalError())


class Pipeline:
    """Registered methods, the policy that guards them, and the sans-IO pipeline.

    ``RPCServer`` (the public class) adds registration and the asyncio driver; transports
    only ever call ``dispatch``/``dispatch_async`` and ``authenticate``.
    """

    def __init__(
        self,
        *,
        keyring: Authenticator | None = None,
        limits: Limits | None = None,
        reveal_forbidden: bool = False,
        errors: ErrorRegistry | None = None,
    ) -> None:
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigError("limits must be a safe_rpc.Limits instance")
        self.keyring = keyring
        self.limits = limits if limits is not None else Limits()
        self.reveal_forbidden = reveal_forbidden
        self.errors = errors if errors is not None else DEFAULT_ERRORS
        self._methods: dict[str, MethodSpec] = {}
        self._has_private = False
        self._json = self.limits.parser()
        #: Answers ``rpc.discover`` with the encoded document for a caller (set by RPCServer).
        self.discover_answer: Callable[[Principal | None], bytes] | None = None
        #: Called once per finished call when observers are installed (``RPCServer`` sets
        #: it from ``safe_rpc._ops``); None costs one check per message.
        self._emit: Callable[..., None] | None = None
        #: What ``RPCServer(lifespan=...)`` yielded in this process (``Context.state``).
        self.state: Mapping[str, Any] = EMPTY_STATE
        #: Checks on shared state (quotas, single-use tokens); set by RPCServer.
        self.admission: Admission | None = None

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

    def _guarded_flow(
        self,
        data: bytes,
        token: str | None,
        principal: Principal | None,
        transport: str,
        client: str | None,
    ) -> _Flow:
        if self._emit is None:  # no observer: this is the whole cost of the feature
            return (yield from self._guarded(self._flow(data, token, principal, transport, client)))
        return (
            yield from self._guarded(self._observed_flow(data, token, principal, transport, client))
        )

    def _guarded(self, flow: _Flow) -> _Flow:
        # The last line of defence for "never raises for anything the peer sent": a bug in
        # the pipeline becomes one logged internal error, not an exception in a transport.
        try:
            return (yield from flow)
        except Exception:
            return self._pipeline_failure()

    def _pipeline_failure(self) -> bytes:
        error_id = secrets.token_hex(8)
        logger.exception("safe_rpc pipeline failure; error_id=%s", error_id)
        return _INTERNAL_ERROR

    def _observed_flow(
        self,
        data: bytes,
        token: str | None,
        principal: Principal | None,
        transport: str,
        client: str | None,
    ) -> _Flow:
        emit = self._emit
        assert emit is not None
        started = perf_counter()
        seen: list[list[Any]] = []
        answer = yield from self._flow(data, token, principal, transport, client, seen)
        if not seen:  # refused before any element was read: one record, no method
            emit(None, None, transport, client, answer, started, len(data), 1)
        for element, auth, piece in seen:
            request = classify(element)
            method = request_id = None
            if type(request) is Request:
                # Only a registered name is reported: a name from the wire never reaches a
                # log line or a metrics label unless the server defined it.
                method = request.method if request.method in self._methods else None
                request_id = None if request.id is NO_ID else request.id
            who = auth if isinstance(auth, Principal) else None
            emit(method, who, transport, client, piece, started, len(data), len(seen), request_id)
        return answer

    def _flow(
        self,
        data: bytes,
        token: str | None,
        principal: Principal | None,
        transport: str,
        client: str | None,
        seen: list[list[Any]] | None = None,
    ) -> _Flow:
        # ``seen`` (observers only) receives [element, auth, answer piece] per element.
        step = self._start(data, token, principal, transport, client, seen)
        if type(step) is _Admitting:
            step = yield from self._admitted(step, transport, client, seen)
        if type(step) is Batch:
            return (yield from self._batch(step, seen))
        piece = self._finish_single(step, (yield step)) if type(step) is Call else step
        if seen:
            seen[0][2] = piece
        return piece  # type: ignore[return-value]

    def _start(
        self,
        data: bytes,
        token: str | None,
        principal: Principal | None,
        transport: str,
        client: str | None,
        seen: list[list[Any]] | None = None,
    ) -> bytes | Call | Batch | _Admitting | None:
        """Everything up to the first handler call: the final answer, or what to run.

        With an admission hook the message waits for it (``_Admitting``): the generator
        runs the hook's store operations, then goes on.
        """
        limits = self.limits
        if len(data) > limits.max_request_bytes:
            return _REQUEST_TOO_LARGE
        try:
            message = self._json.loads(data)
        except JSONError as exc:
            logger.debug("parse error: %s", exc)
            return _PARSE_ERROR  # section 5.1: id is null when it cannot be detected
        auth = self._resolve_auth(token, principal)
        if self.admission is not None:
            return _Admitting(message, auth)
        return self._elements(message, auth, transport, client, seen)  # type: ignore[return-value]

    def _admitted(
        self,
        pending: _Admitting,
        transport: str,
        client: str | None,
        seen: list[list[Any]] | None,
    ) -> Generator[Deferred, Any, bytes | Call | Batch | None]:
        # Once per message (single-use tokens), then once per element that passed
        # authorisation (quotas), in order, before any handler runs: a batch whose calls
        # then run concurrently has had each element counted exactly once.
        assert self.admission is not None
        auth = pending.auth
        if type(auth) is Principal:
            refusal = yield from self.admission.message(auth)
            if refusal is not None:
                auth = _Refused(refusal)
        step = self._elements(pending.message, auth, transport, client, seen)
        if type(step) is _Admit:
            single = yield from self._admit(step, auth, transport, client)
            if type(single) is bytes and len(single) > self.limits.max_response_bytes:
                return self._encode_error(ResponseTooLarge(), _request_id(pending.message))
            return single
        if type(step) is not Batch or not any(type(item) is _Admit for item in step.steps):
            return step  # type: ignore[return-value]
        steps: list[bytes | Call | _Admit | None] = []
        for item in step.steps:
            if type(item) is _Admit:
                item = yield from self._admit(item, auth, transport, client)
            steps.append(item)
        return Batch(step.elements, steps)

    def _admit(
        self, pending: _Admit, auth: _Auth, transport: str, client: str | None
    ) -> Generator[Deferred, Any, bytes | Call | None]:
        assert self.admission is not None
        request = pending.request
        who = auth if type(auth) is Principal else None
        refusal = yield from self.admission.element(pending.spec, who, client)
        if refusal is not None:
            return None if request.id is NO_ID else self._encode_error(refusal, request.id)
        return self._bind(request, pending.spec, auth, transport, client)

    def _elements(
        self,
        message: Any,
        auth: _Auth,
        transport: str,
        client: str | None,
        seen: list[list[Any]] | None,
    ) -> bytes | Call | Batch | _Admit | None:
        limits = self.limits
        if type(message) is not list:
            if seen is not None:
                seen.append([message, auth, None])
            step = self._prepare(message, auth, transport, client)
            if type(step) is bytes and len(step) > limits.max_response_bytes:
                return self._encode_error(ResponseTooLarge(), _request_id(message))
            return step
        # Section 6: "If the batch rpc call itself fails to be recognized as an valid JSON or
        # as an Array with at least one value, the response from the Server MUST be a single
        # Response object." A batch over the limit is refused whole, before any element runs.
        if not message:
            return _INVALID_REQUEST
        if len(message) > limits.max_batch:
            return _BATCH_TOO_LARGE
        if seen is not None:
            seen.extend([element, auth, None] for element in message)
        steps = [self._prepare(element, auth, transport, client) for element in message]
        return Batch(message, steps)

    def _finish_single(self, call: Call, outcome: Any) -> bytes | None:
        piece = self._finish(call, outcome)
        if piece is not None and len(piece) > self.limits.max_response_bytes:
            return self._encode_error(ResponseTooLarge(), call.id)
        return piece

    def _batch(self, batch: Batch, seen: list[list[Any]] | None = None) -> _Flow:
        # The driver answers a Batch with the outcomes of its calls, in order: all at once
        # (dispatch_async runs them concurrently under one deadline), or as a sequence that
        # runs call i when item i is read (dispatch). Items are read in order, and none
        # once the answer is over the response cap: that work could never be delivered.
        outcomes = (yield batch) if batch.calls else ()
        pieces: list[bytes] = []
        budget = self.limits.max_response_bytes - 2  # the enclosing brackets
        index = 0
        for position, (step, element) in enumerate(zip(batch.steps, batch.elements, strict=True)):
            piece: bytes | None
            if type(step) is not Call:
                piece = step  # type: ignore[assignment]
            else:
                if budget >= 0:
                    piece = self._finish(step, outcomes[index])
                elif step.id is NO_ID:
                    piece = None
                else:
                    piece = self._encode_error(ResponseTooLarge(), step.id)
                index += 1
            if piece is not None:
                budget -= len(piece) + 1
                if budget < 0:
                    piece = self._encode_error(ResponseTooLarge(), _request_id(element))
                pieces.append(piece)
            if seen is not None:
                seen[position][2] = piece
        # Section 6: "If there are no Response objects contained within the Response array
        # as it is to be sent to the client, the server MUST NOT return an empty Array and
        # should return nothing at all."
        if not pieces:
            return None
        return b"[" + b",".join(pieces) + b"]"

    def _prepare(
        self, element: Any, auth: _Auth, transport: str, client: str | None
    ) -> bytes | Call | _Admit | None:
        """One element up to its handler call: the final answer, or the Call to make."""
        request = classify(element)
        if type(request) is not Request:
            return self._encode_error(InvalidRequest(), request)
        spec = self._methods.get(request.method)
        if spec is None and request.method == DISCOVER_METHOD and self.discover_answer:
            return self._discover(request, auth)
        # A public method with no bad or refused credential is allowed: the first rules of
        # _authorize.
        if spec is None or not spec.public or (auth is not None and type(auth) is not Principal):
            denial = self._authorize(spec, request.method, auth)
            if denial is not None:
                # Section 4.1: "The Server MUST NOT reply to a Notification", errors included.
                return None if request.id is NO_ID else self._encode_error(denial, request.id)
        assert spec is not None  # _authorize denies unknown methods
        if self.admission is not None:  # quotas and other checks on shared state
            return _Admit(request, spec)
        return self._bind(request, spec, auth, transport, client)

    def _bind(
        self, request: Request, spec: MethodSpec, auth: _Auth, transport: str, client: str | None
    ) -> bytes | Call | None:
        """An admitted element: its arguments validated, the Call to make (or the error)."""
        try:
            kwargs = spec.bind(request.params)
        except InvalidParams as exc:
            return None if request.id is NO_ID else self._encode_error(exc, request.id)
        if spec.context_param is None and not spec.positional_only:
            return Call(spec, _NO_ARGS, kwargs, request.id)
        context = None
        if spec.context_param is not None:
            context = Context(
                principal=auth if isinstance(auth, Principal) else None,
                request_id=None if request.id is NO_ID else request.id,
                is_notification=request.id is NO_ID,
                method=spec.name,
                transport=transport,
                client=client,
                state=self.state,
            )
        args, kwargs = spec.call_args(kwargs, context)  # type: ignore[arg-type]
        return Call(spec, args, kwargs, request.id)

    def _finish(self, call: Call, outcome: Any) -> bytes | None:
        """The answer to one call, from what its handler returned (or a Failure)."""
        if call.id is NO_ID:
            return None
        if type(outcome) is Failure:
            return self._encode_error(outcome.error, call.id)
        spec = call.spec
        try:
            if type(outcome) is spec.plain_result:
                # A value whose type *is* the plain annotation (an int from `-> int`, a
                # str from `-> str`) is already its own JSON form.
                fast = result_bytes(outcome, call.id)
                if fast is not None:
                    return fast
            else:
                outcome = spec.result_adapter.dump_python(outcome, mode="json", warnings="error")
            return dumps_strict({"jsonrpc": "2.0", "result": outcome, "id": call.id})
        except Exception as exc:  # wrong type for the annotation, NaN, huge int, surrogate
            return self._encode_error(self._internal_error(spec.name, exc), call.id)

    def _discover(self, request: Request, auth: _Auth) -> bytes | None:
        # Reserved (section 4), built in, callable anonymously: the answer is the caller's
        # own view. A present-but-invalid token fails it like every other call.
        error: RPCError
        assert self.discover_answer is not None
        if auth is _INVALID:
            error = Unauthenticated()
        elif type(auth) is _Refused:  # a replayed single-use token: the whole message
            error = auth.error
        elif request.params:
            detail = {"loc": ["params"], "type": "too_many_arguments", "msg": "no params"}
            error = InvalidParams(data=[detail])
        elif request.id is NO_ID:
            return None
        else:
            try:
                document = self.discover_answer(auth if isinstance(auth, Principal) else None)
            except Exception as exc:  # a schema that cannot be encoded: the server's bug
                error = self._internal_error(DISCOVER_METHOD, exc)
            else:
                head = b'{"jsonrpc":"2.0","result":'
                return head + document + b',"id":' + dumps_strict(request.id) + b"}"
        return None if request.id is NO_ID else self._encode_error(error, request.id)

    def _authorize(self, spec: MethodSpec | None, name: str, auth: _Auth) -> RPCError | None:
        # SECURITY.md SR-39: deny by default, decided per element, nothing leaks.
        if auth is _INVALID:
            return Unauthenticated()  # a bad credential never downgrades to anonymous
        if type(auth) is _Refused:
            return auth.error
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
        if error.data is None:
            fast = error_bytes(error.code, error.message, id)
            if fast is not None:
                return fast
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

    def _failure(self, spec: MethodSpec, exc: Exception) -> Failure:
        if isinstance(exc, RPCError) and not isinstance(exc, RemoteError):
            # A deliberate, declared error: its code, fixed message and validated data.
            return Failure(exc)
        # Anything else, including a RemoteError re-raised from another server (its data
        # is foreign and unvalidated), is an internal error.
        return Failure(self._internal_error(spec.name, exc))


def _request_id(element: Any) -> Any:
    request = classify(element)
    return request.id if type(request) is Request and request.id is not NO_ID else None
