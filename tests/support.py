"""Helpers shared by the test modules: strict response checking against the schemas."""

from __future__ import annotations

import json
from typing import Any

from safe_rpc._core.schemas import validate

__all__ = ["KNOWN_CODES", "check_response", "request"]

#: Every error code the library itself may put on the wire (README: Errors).
KNOWN_CODES = frozenset(
    {-32700, -32600, -32601, -32602, -32603, -32001, -32002, -32003, -32004, -32007, -32008,
     -32009, -32010}
)  # fmt: skip


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    assert len(obj) == len(pairs), "duplicate member in a response"
    return obj


def check_response(raw: bytes | None) -> Any:
    """Parse response bytes strictly and validate them against the response schemas.

    Returns the parsed value (a dict, or a list for a batch answer), or None for None.
    """
    if raw is None:
        return None
    assert isinstance(raw, bytes)
    value = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    validate(value, "batch-response" if isinstance(value, list) else "response")
    return value


def request(method: str, params: Any = None, id: Any = 1) -> bytes:
    """Encode one request (``id=...`` omitted when ``id`` is the string "notification")."""
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    if id != "notification":
        msg["id"] = id
    return json.dumps(msg).encode()
