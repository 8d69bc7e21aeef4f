"""JSON-RPC 2.0 envelope rules, sans I/O.

This module decides, for one parsed message element, whether it is a valid Request (or
Notification) and what its id is, and it builds response objects. It is the runtime fast
path of the JSON Schemas in ``schemas/``; ``tests/test_schema_oracle.py`` proves the two
agree on every conformance case and on generated messages.

References are to https://www.jsonrpc.org/specification (JSON-RPC 2.0).
"""

from __future__ import annotations

from typing import Any, Final

from .errors import RPCError

__all__ = [
    "AUTH_METHOD",
    "DISCOVER_METHOD",
    "NO_ID",
    "Request",
    "classify",
    "error_object",
    "error_response",
    "valid_id",
]


class _NoId:
    """Sentinel for "the message has no id member", which makes it a Notification.

    Section 4: "A Request object that is a Notification signifies the Client's lack of
    interest in the corresponding Response object". ``"id": null`` is *not* that: it is a
    request whose response carries ``"id": null``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ID"


NO_ID: Final = _NoId()


#: The reserved method a connection-oriented transport (framed TCP, WebSocket) authenticates
#: with: ``{"token": "..."}``. Names beginning with ``rpc.`` are reserved by section 4.
AUTH_METHOD: Final = "rpc.authenticate"
#: The built-in, reserved method that answers the caller's OpenRPC document (no params).
DISCOVER_METHOD: Final = "rpc.discover"


def valid_id(value: Any) -> bool:
    """Section 4: id is "a String, Number, or NULL"; the schema narrows Number to integer.

    JSON has one number type, so an integral float such as ``1.0`` is the same JSON value
    as ``1`` and is accepted like JSON Schema's ``"integer"`` accepts it.
    """
    if value is None or type(value) is str or type(value) is int:
        return True
    return type(value) is float and value.is_integer()


class Request:
    """A valid request or notification element (``id is NO_ID`` for a notification)."""

    __slots__ = ("id", "method", "params")

    def __init__(self, method: str, params: list[Any] | dict[str, Any] | None, id: Any) -> None:
        self.method = method
        self.params = params
        self.id = id

    @property
    def is_notification(self) -> bool:
        return self.id is NO_ID


def classify(element: Any) -> Request | Any:
    """Return a ``Request`` for a valid element, else the id to answer -32600 with.

    Section 4 (Request object) and section 5 ("If there was an error in detecting the id in
    the Request object (e.g. Parse error/Invalid Request), it MUST be Null"): the id of an
    invalid request is echoed only if the id itself is valid.
    """
    if type(element) is not dict:
        return None
    id_ = element.get("id", NO_ID)
    kind = type(id_)
    id_ok = id_ is NO_ID or kind is int or kind is str or valid_id(id_)
    answer_id = id_ if id_ok and id_ is not NO_ID else None
    if not id_ok:
        return answer_id
    # "jsonrpc ... MUST be exactly "2.0"."
    version = element.get("jsonrpc")
    if type(version) is not str or version != "2.0":
        return answer_id
    method = element.get("method")
    if type(method) is not str:
        return answer_id
    # "params ... MUST be a Structured value ... This member MAY be omitted." null is neither.
    params = element.get("params")
    if params is None:
        if "params" in element:
            return answer_id
        members = 2
    elif type(params) is not list and type(params) is not dict:
        return answer_id
    else:
        members = 3
    # No members beyond the four the spec defines (additionalProperties: false): the ones
    # found above, and the id if present, must be all of them (cheaper than a set test).
    if len(element) != members + (id_ is not NO_ID):
        return answer_id
    return Request(method, params, id_)


def error_object(error: RPCError) -> dict[str, Any]:
    """Section 5.1 error object: code, fixed message, and data only when there is some."""
    obj: dict[str, Any] = {"code": error.code, "message": error.message}
    data = error.data_for_wire()
    if data is not None:
        obj["data"] = data
    return obj


def error_response(error: RPCError, id: Any) -> dict[str, Any]:
    """A Response object carrying ``error`` for the request with ``id``."""
    return {"jsonrpc": "2.0", "error": error_object(error), "id": id}
