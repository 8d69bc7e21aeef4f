"""The exception tree and the code -> class registry.

Every error that crosses the wire is an ``RPCError`` subclass whose JSON-RPC code and fixed
message are class attributes. The client rebuilds a received error by looking its *code* up
in an ``ErrorRegistry``; nothing in the message or in ``data`` ever selects or imports a class.

    Exception
    ├── RPCError ................... an error with a JSON-RPC code (server and client side)
    │   ├── ProtocolError
    │   │   ├── ParseError ............. -32700  not strict I-JSON
    │   │   └── InvalidRequest ......... -32600  envelope invalid, empty batch
    │   ├── MethodNotFound ............. -32601  no such method (or hidden from this caller)
    │   ├── InvalidParams .............. -32602  arguments fail the method's model
    │   ├── InternalError .............. -32603  handler crashed, result not serialisable
    │   ├── AuthError
    │   │   ├── Unauthenticated ........ -32001  token missing/invalid/expired/revoked
    │   │   └── Forbidden .............. -32003  token lacks a scope (only if revealed)
    │   ├── LimitExceeded
    │   │   ├── RequestTimeout ......... -32002  handler exceeded its deadline
    │   │   ├── RateLimited ............ -32004  caller over its rate
    │   │   ├── RequestTooLarge ........ -32007  message over the byte limit
    │   │   ├── ResponseTooLarge ....... -32008  response over the byte limit
    │   │   ├── ServerBusy ............. -32009  in-flight or connection cap reached
    │   │   └── BatchTooLarge .......... -32010  batch over the item limit
    │   ├── RemoteError ................ (client) a code this side does not know
    │   └── <your application errors> .. codes outside -32768..-32000
    ├── TransportError ................. (client) I/O failure or timeout
    │   └── InvalidResponse ............ (client) the server broke the protocol
    └── ConfigError .................... (developer) bad configuration, raised at startup
        └── RegistrationError .......... (developer) bad @rpc.method use, raised at import
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import BaseModel

__all__ = [
    "DEFAULT_ERRORS",
    "AuthError",
    "BatchTooLarge",
    "ConfigError",
    "ErrorRegistry",
    "Forbidden",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "InvalidResponse",
    "LimitExceeded",
    "MethodNotFound",
    "ParseError",
    "ProtocolError",
    "RPCError",
    "RateLimited",
    "RegistrationError",
    "RemoteError",
    "RequestTimeout",
    "RequestTooLarge",
    "ResponseTooLarge",
    "ServerBusy",
    "TransportError",
    "Unauthenticated",
]

# JSON-RPC 2.0 section 5.1: "-32768 to -32000 ... Reserved for pre-defined errors."
RESERVED_CODES = range(-32768, -32000 + 1)


class ConfigError(ValueError):
    """The server or client was configured in a way that is unsafe or impossible.

    Every configuration mistake raises it, at construction or registration, never later.
    It is a ``ValueError`` too, so code that catches ``ValueError`` keeps working.
    """


class RegistrationError(ConfigError):
    """``@rpc.method`` (or an error class) was used in a way that cannot work."""


class TransportError(Exception):
    """The client could not complete a call: connection failure, timeout, closed socket."""


class InvalidResponse(TransportError):
    """The server answered with something that is not a valid JSON-RPC response for the call."""


class ErrorRegistry:
    """Maps JSON-RPC error codes to exception classes.

    ``RPCError`` subclasses that define ``code`` register themselves in ``DEFAULT_ERRORS``
    when the class statement runs; pass ``register=False`` in the class statement to keep a
    class out of it and add it to a registry of your own with :meth:`add`.

    Raises:
        RegistrationError: from :meth:`add`, when another class already owns the code.
    """

    def __init__(self) -> None:
        self._by_code: dict[int, type[RPCError]] = {}

    def add(self, cls: type[RPCError]) -> type[RPCError]:
        """Register ``cls`` under ``cls.code``; returns ``cls`` so it can be a decorator."""
        code = cls.__dict__.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            raise RegistrationError(f"{cls.__qualname__}.code must be an int")
        existing = self._by_code.get(code)
        # Re-running a class statement (module reload, a test importing an example twice)
        # replaces the class; two *different* classes with one code is a mistake.
        if existing is not None and (existing.__module__, existing.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise RegistrationError(
                f"error code {code} is already used by {existing.__module__}."
                f"{existing.__qualname__}; give {cls.__qualname__} a different code"
            )
        self._by_code[code] = cls
        return cls

    def get(self, code: int) -> type[RPCError] | None:
        """The class registered for ``code``, or None."""
        return self._by_code.get(code)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __iter__(self) -> Iterator[type[RPCError]]:
        return iter(list(self._by_code.values()))

    @classmethod
    def standard(cls) -> ErrorRegistry:
        """A new registry holding only safe_rpc's own classes (the reserved codes).

        Give each client of a service a registry of its own built from this, plus that
        service's application errors: two services may then use the same code for
        different errors without colliding in the process-wide ``DEFAULT_ERRORS``.
        """
        new = cls()
        new._by_code = {c: k for c, k in DEFAULT_ERRORS._by_code.items() if c in RESERVED_CODES}
        return new

    def copy(self) -> ErrorRegistry:
        """A new registry holding the same classes (to extend without touching this one)."""
        new = ErrorRegistry()
        new._by_code = dict(self._by_code)
        return new


DEFAULT_ERRORS = ErrorRegistry()


class RPCError(Exception):
    """Base of every error with a JSON-RPC code.

    Subclass it to declare an application error; give it a ``code`` outside the reserved
    range -32768..-32000, a fixed ``message`` and, optionally, a pydantic ``Data`` model::

        class InsufficientFunds(RPCError):
            code = 1001
            message = "insufficient funds"

            class Data(BaseModel):
                balance: int

        raise InsufficientFunds(data={"balance": 3})

    The message is fixed per class on purpose: it is what reaches the caller, so it must not
    be built from request data or exception text.

    Attributes:
        code: the JSON-RPC error code (class attribute).
        message: the fixed, human-readable message (class attribute).
        data: the validated ``Data`` model instance, a JSON value, or None.
    """

    code: ClassVar[int]
    message: ClassVar[str] = "error"
    Data: ClassVar[type[BaseModel] | None] = None
    _reserved: ClassVar[bool] = False  # only safe_rpc's own classes may use reserved codes

    def __init_subclass__(cls, *, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            return  # an intermediate class (ProtocolError, your own base class)
        code = cls.__dict__["code"]
        if not isinstance(code, int) or isinstance(code, bool):
            raise RegistrationError(f"{cls.__qualname__}.code must be an int, got {code!r}")
        if code in RESERVED_CODES and not cls.__dict__.get("_reserved", False):
            raise RegistrationError(
                f"{cls.__qualname__}.code = {code} is in the range reserved by JSON-RPC 2.0 "
                "(-32768..-32000); pick an application code outside it, e.g. 1000"
            )
        data_model = cls.__dict__.get("Data")
        if data_model is not None and not (
            isinstance(data_model, type) and issubclass(data_model, BaseModel)
        ):
            raise RegistrationError(f"{cls.__qualname__}.Data must be a pydantic BaseModel")
        if register:
            DEFAULT_ERRORS.add(cls)

    def __init__(self, data: Any = None) -> None:
        if type(self) is RPCError or not hasattr(type(self), "code"):
            raise TypeError(f"{type(self).__name__} has no code; raise a subclass that defines one")
        model = type(self).Data
        if model is not None and data is not None and not isinstance(data, model):
            # Validation errors here are the handler's bug: they surface as -32603.
            data = model.model_validate(data)
        self.data: Any = data
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, data={self.data!r})"

    def data_for_wire(self) -> Any:
        """``data`` as a JSON value (a ``Data`` model is dumped in JSON mode)."""
        if isinstance(self.data, BaseModel):
            return self.data.model_dump(mode="json")
        return self.data


class ProtocolError(RPCError):
    """The peer sent something that is not a valid JSON-RPC 2.0 message."""


class ParseError(ProtocolError):
    """The message is not strict I-JSON (RFC 7493) within the limits."""

    code = -32700
    message = "Parse error"
    _reserved = True


class InvalidRequest(ProtocolError):
    """The message is not a valid JSON-RPC 2.0 request, or is an empty batch."""

    code = -32600
    message = "Invalid Request"
    _reserved = True


class MethodNotFound(RPCError):
    """No such method, or one hidden from this caller (SECURITY.md SR-39)."""

    code = -32601
    message = "Method not found"
    _reserved = True


class InvalidParams(RPCError):
    """The arguments fail the method's model; ``data`` lists ``{loc, type, msg}``."""

    code = -32602
    message = "Invalid params"
    _reserved = True


class InternalError(RPCError):
    """A handler crashed or its result could not be serialised; ``data`` has an error id."""

    code = -32603
    message = "Internal error"
    _reserved = True


class AuthError(RPCError):
    """The caller is not allowed to make this call."""


class Unauthenticated(AuthError):
    """The token is missing, malformed, forged, expired, revoked or for another audience."""

    code = -32001
    message = "Unauthenticated"
    _reserved = True


class Forbidden(AuthError):
    """The token lacks a scope (sent only when the server reveals it)."""

    code = -32003
    message = "Forbidden"
    _reserved = True


class LimitExceeded(RPCError):
    """A resource limit of ``Limits`` was reached."""


class RequestTimeout(LimitExceeded):
    """The handler exceeded ``Limits.call_timeout`` and was cancelled."""

    code = -32002
    message = "Request timed out"
    _reserved = True


class RateLimited(LimitExceeded):
    """The caller is over its rate."""

    code = -32004
    message = "Rate limited"
    _reserved = True


class RequestTooLarge(LimitExceeded):
    """The message is over ``Limits.max_request_bytes``."""

    code = -32007
    message = "Request too large"
    _reserved = True


class ResponseTooLarge(LimitExceeded):
    """The response would be over ``Limits.max_response_bytes``."""

    code = -32008
    message = "Response too large"
    _reserved = True


class ServerBusy(LimitExceeded):
    """An in-flight or connection cap is reached; try again later."""

    code = -32009
    message = "Server busy"
    _reserved = True


class BatchTooLarge(LimitExceeded):
    """The batch has more than ``Limits.max_batch`` elements; none was executed."""

    code = -32010
    message = "Batch too large"
    _reserved = True


class SlowConsumer(LimitExceeded):
    """A subscriber fell more than ``Limits.subscription_queue`` items behind; that
    subscription ended (the connection and its other subscriptions carry on)."""

    code = -32011
    message = "Slow consumer"
    _reserved = True


class RemoteError(RPCError, register=False):
    """An error response whose code this side has no class for.

    Carries the code, message and data exactly as received (untrusted: display with care).
    """

    code = 0  # placeholder; every instance carries its own code
    _reserved = True

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code  # type: ignore[misc]  # instance attribute shadows the ClassVar
        self.message = message  # type: ignore[misc]
        Exception.__init__(self, message)
        self.data = data

    def __str__(self) -> str:
        return f"[{self.code}] {self.message!a}"
