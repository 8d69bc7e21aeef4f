"""The client's protocol logic, sans I/O, shared by ``Client`` and ``AsyncClient``.

The server is not trusted (OWASP API10, SECURITY.md row SR-03): every response is
read with the strict parser under a size cap, must be a well-formed JSON-RPC 2.0 response,
and must answer exactly the ids that were sent, once each. Errors are rebuilt by looking
the *code* up in an ``ErrorRegistry``; ``message`` and ``data`` never select, name or import
a class, and ``data`` only ever goes through the class's own pydantic ``Data`` model.
"""

from __future__ import annotations

import itertools
from typing import Any, Final

from pydantic import ValidationError

from .._core.errors import DEFAULT_ERRORS, ErrorRegistry, InvalidResponse, RemoteError, RPCError
from .._core.json import JSONError, dumps_strict
from .._core.limits import CLIENT_JSON

__all__ = ["Call", "ClientProtocol", "Outcome"]

_RESPONSE_MEMBERS: Final = frozenset(("jsonrpc", "result", "error", "id"))
_MAX_MESSAGE: Final = 512  # characters of a RemoteError's message kept (it is untrusted text)


class Outcome:
    """The answer to one call: a value, or the error to raise."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: RPCError | None = None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class Call:
    """One request or notification to put in a message."""

    __slots__ = ("id", "method", "params")

    def __init__(self, method: str, params: list[Any] | dict[str, Any] | None, id: int | None):
        self.method = method
        self.params = params
        self.id = id


def make_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | dict[str, Any] | None:
    # JSON-RPC 2.0 section 4.2: params are by-position OR by-name, never both.
    if args and kwargs:
        raise TypeError("pass arguments by position or by name, not both (JSON-RPC 2.0 4.2)")
    if kwargs:
        return dict(kwargs)
    return list(args) if args else None


class ClientProtocol:
    """Builds request bytes and turns response bytes into outcomes.

    Args:
        max_response_bytes: larger responses are refused (transports also stop reading).
        errors: code -> class registry (``DEFAULT_ERRORS`` by default).
    """

    def __init__(self, *, max_response_bytes: int, errors: ErrorRegistry | None = None) -> None:
        self.max_response_bytes = max_response_bytes
        self.errors = errors if errors is not None else DEFAULT_ERRORS
        self._ids = itertools.count(1)

    def call(self, method: str, params: Any, *, notify: bool = False) -> Call:
        if not isinstance(method, str) or not method:
            raise TypeError("method must be a non-empty string")
        return Call(method, params, None if notify else next(self._ids))

    def encode(self, calls: list[Call], *, batch: bool) -> bytes:
        messages = []
        for call in calls:
            message: dict[str, Any] = {"jsonrpc": "2.0", "method": call.method}
            if call.params is not None:
                message["params"] = call.params
            if call.id is not None:
                message["id"] = call.id
            messages.append(message)
        try:
            return dumps_strict(messages if batch else messages[0])
        except JSONError as exc:
            raise TypeError(f"arguments are not JSON values: {exc}") from None

    def decode(self, raw: bytes | None, calls: list[Call], *, batch: bool) -> dict[int, Outcome]:
        """Outcomes by id for the requests among ``calls``.

        Raises:
            InvalidResponse: the answer is not exactly one valid response per request id.
            RPCError: the server answered the whole message with one error (``id: null``):
                for example a parse error, a batch too large, or -32001.
        """
        expected = {call.id for call in calls if call.id is not None}
        if raw is None:
            if expected:
                raise InvalidResponse("the server sent no response to a request")
            return {}
        if not expected:
            raise InvalidResponse("the server answered a message of notifications only")
        if len(raw) > self.max_response_bytes:
            raise InvalidResponse("response larger than max_response_bytes")
        try:
            value = CLIENT_JSON.loads(raw)
        except JSONError:
            raise InvalidResponse("response is not strict JSON") from None
        if type(value) is dict and value.get("id", 0) is None:
            # Section 5: id is null when the server could not read the request at all.
            outcome = self._outcome(value)
            if outcome.error is None:
                raise InvalidResponse("a result with id null")
            raise outcome.error
        if batch != (type(value) is list):
            raise InvalidResponse("response shape does not match the request")
        entries = value if batch else [value]
        outcomes: dict[int, Outcome] = {}
        for entry in entries:
            if type(entry) is not dict:
                raise InvalidResponse("a response entry is not an object")
            response_id = entry.get("id")
            if type(response_id) is not int or response_id not in expected:
                raise InvalidResponse("a response carries an id that was not asked for")
            if response_id in outcomes:
                raise InvalidResponse("two responses carry the same id")
            outcomes[response_id] = self._outcome(entry)
        if outcomes.keys() != expected:
            raise InvalidResponse("the response lacks an answer for some request")
        return outcomes

    def _outcome(self, entry: dict[str, Any]) -> Outcome:
        if not entry.keys() <= _RESPONSE_MEMBERS or entry.get("jsonrpc") != "2.0":
            raise InvalidResponse("not a JSON-RPC 2.0 response object")
        if ("result" in entry) == ("error" in entry):
            raise InvalidResponse("a response must hold exactly one of result and error")
        if "result" in entry:
            return Outcome(value=entry["result"])
        return Outcome(error=self.rebuild(entry["error"]))

    def rebuild(self, error: Any) -> RPCError:
        """The exception for an error object, chosen by its code alone."""
        if type(error) is not dict or not error.keys() <= {"code", "message", "data"}:
            raise InvalidResponse("malformed error object")
        code, message = error.get("code"), error.get("message")
        if type(code) is not int or type(message) is not str:
            raise InvalidResponse("malformed error object")
        data = error.get("data")
        cls = self.errors.get(code)
        if cls is None or cls is RemoteError:
            return RemoteError(code, message[:_MAX_MESSAGE], data)
        model = cls.Data
        if model is not None and data is not None:
            # As strictly as the server validates params (SECURITY.md, SR-16): JSON's view of
            # types but no "3" for an int, and no unknown members at any depth. Data that
            # breaks the class's declared contract is the server's fault, not an answer.
            try:
                data = model.model_validate_json(dumps_strict(data), strict=True, extra="forbid")
            except (ValidationError, JSONError):
                raise InvalidResponse("error data does not fit its class's Data model") from None
        try:
            return cls(data=data)  # the data is validated; nothing is imported
        except (ValidationError, TypeError, ValueError):
            raise InvalidResponse("error data does not fit its class") from None
