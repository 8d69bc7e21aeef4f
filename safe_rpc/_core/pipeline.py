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
from collections.abc import Generator
from typing import Any, Final

from .authn import Authenticator
from .context import Context, Principal
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
from .protocol import NO_ID, Request, classify, error_response
from .registry import MethodSpec

__all__ = ["Batch", "Call", "Failure", "Pipeline"]

logger = logging.getLogger("safe_rpc")


class _Invalid:
    """Auth state of a message whose credential was presented but did not verify."""

    __slots__ = ()


_INVALID: Final = _Invalid()
_Auth = Principal | None | _Invalid


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

    def __init__(self, elements: list[Any], steps: list[bytes | Call | None]) -> None:
        self.elements = elements
        self.steps = steps
        self.calls = [step for step in steps if type(step) is Call]


_Flow = Generator[Call | Batch, Any, bytes | None]
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
        return (yield from self._guarded(self._flow(data, token, principal, transport, client)))

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

    def _flow(
        self,
        data: bytes,
        token: str | None,
        principal: Principal | None,
        transport: str,
        client: str | None,
    ) -> _Flow:
        step = self._start(data, token, principal, transport, client)
        if type(step) is Call:
            return self._finish_single(step, (yield step))
        if type(step) is Batch:
            return (yield from self._batch(step))
        return step  # type: ignore[return-value]

    def _start(
        self,
        data: bytes,
        token: str | None,
        principal: Principal | None,
        transport: str,
        client: str | None,
    ) -> bytes | Call | Batch | None:
        """Everything up to the first handler call: the final answer, or what to run."""
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
        steps = [self._prepare(element, auth, transport, client) for element in message]
        return Batch(message, steps)

    def _finish_single(self, call: Call, outcome: Any) -> bytes | None:
        piece = self._finish(call, outcome)
        if piece is not None and len(piece) > self.limits.max_response_bytes:
            return self._encode_error(ResponseTooLarge(), call.id)
        return piece

    def _batch(self, batch: Batch) -> _Flow:
        # The driver answers a Batch with the outcomes of its calls, in order: all at once
        # (dispatch_async runs them concurrently under one deadline), or as a sequence that
        # runs call i when item i is read (dispatch). Items are read in order, and none
        # once the answer is over the response cap: that work could never be delivered.
        outcomes = (yield batch) if batch.calls else ()
        pieces: list[bytes] = []
        budget = self.limits.max_response_bytes - 2  # the enclosing brackets
        index = 0
        for step, element in zip(batch.steps, batch.elements, strict=True):
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

    def _prepare(
        self, element: Any, auth: _Auth, transport: str, client: str | None
    ) -> bytes | Call | None:
        """One element up to its handler call: the final answer, or the Call to make."""
        request = classify(element)
        if type(request) is not Request:
            return self._encode_error(InvalidRequest(), request)
        spec = self._methods.get(request.method)
        # A public method with no bad credential is allowed: the first rule of _authorize.
        if spec is None or not spec.public or auth is _INVALID:
            denial = self._authorize(spec, request.method, auth)
            if denial is not None:
                # Section 4.1: "The Server MUST NOT reply to a Notification", errors included.
                return None if request.id is NO_ID else self._encode_error(denial, request.id)
        assert spec is not None  # _authorize denies unknown methods
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
