"""Case tables shared by the conformance tests and the schema oracle.

``SPEC_EXAMPLES`` re-states every example of section 7 of the JSON-RPC 2.0 specification
(https://www.jsonrpc.org/specification#examples) as (name, request, expected response),
with the expected response as a parsed JSON value (None: no response at all).
``ENVELOPES`` lists single request objects with whether schemas/request.json accepts them.
"""

from __future__ import annotations

from typing import Any

from safe_rpc import RPCServer


def spec_server() -> RPCServer:
    """The methods the specification's examples call, all public, no keyring."""
    rpc = RPCServer()

    @rpc.method(public=True)
    def subtract(minuend: int, subtrahend: int) -> int:
        return minuend - subtrahend

    @rpc.method(public=True)
    def update(a: int, b: int, c: int, d: int, e: int) -> None:
        return None

    @rpc.method(public=True)
    def sum(a: int, b: int, c: int) -> int:  # the spec's own method name
        return a + b + c

    @rpc.method(public=True)
    def notify_hello(value: int) -> int:
        return value

    @rpc.method(public=True)
    def notify_sum(a: int, b: int, c: int) -> int:
        return a + b + c

    @rpc.method(public=True)
    def get_data() -> list[Any]:
        return ["hello", 5]

    return rpc


def _error(code: int, message: str, id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}


def _result(value: Any, id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": value, "id": id}


SPEC_EXAMPLES: list[tuple[str, bytes, Any]] = [
    (
        "positional parameters",
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        _result(19, 1),
    ),
    (
        "positional parameters, swapped",
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        _result(-19, 2),
    ),
    (
        "named parameters",
        b'{"jsonrpc": "2.0", "method": "subtract", '
        b'"params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        _result(19, 3),
    ),
    (
        "named parameters, reordered",
        b'{"jsonrpc": "2.0", "method": "subtract", '
        b'"params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        _result(19, 4),
    ),
    ("notification", b'{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    ("notification of an unknown method", b'{"jsonrpc": "2.0", "method": "foobar"}', None),
    (
        "non-existent method",
        b'{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        _error(-32601, "Method not found", "1"),
    ),
    (
        "invalid JSON",
        b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        _error(-32700, "Parse error", None),
    ),
    (
        "invalid Request object",
        b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        _error(-32600, "Invalid Request", None),
    ),
    (
        "batch, invalid JSON",
        b'[\n  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},\n'
        b'  {"jsonrpc": "2.0", "method"\n]',
        _error(-32700, "Parse error", None),
    ),
    ("empty array", b"[]", _error(-32600, "Invalid Request", None)),
    ("invalid batch, not empty", b"[1]", [_error(-32600, "Invalid Request", None)]),
    ("invalid batch", b"[1,2,3]", [_error(-32600, "Invalid Request", None)] * 3),
    (
        "mixed batch",
        b"""[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]""",
        # Answers in request order (the spec allows any order; safe_rpc keeps the order).
        [
            _result(7, "1"),
            _result(19, "2"),
            _error(-32600, "Invalid Request", None),
            _error(-32601, "Method not found", "5"),
            _result(["hello", 5], "9"),
        ],
    ),
    (
        "batch of notifications",
        b"""[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]""",
        None,
    ),
]

#: (request object, valid per schemas/request.json and JSON-RPC 2.0 section 4)
ENVELOPES: list[tuple[Any, bool]] = [
    ({"jsonrpc": "2.0", "method": "m"}, True),
    ({"jsonrpc": "2.0", "method": "m", "id": None}, True),
    ({"jsonrpc": "2.0", "method": "m", "id": 1}, True),
    ({"jsonrpc": "2.0", "method": "m", "id": "x"}, True),
    ({"jsonrpc": "2.0", "method": "m", "id": 1.0}, True),  # JSON has one number type
    ({"jsonrpc": "2.0", "method": "m", "params": [], "id": 1}, True),
    ({"jsonrpc": "2.0", "method": "m", "params": {}, "id": 1}, True),
    ({"jsonrpc": "2.0", "method": "", "id": 1}, True),
    ({"jsonrpc": "2.0", "method": "m", "id": 1.5}, False),
    ({"jsonrpc": "2.0", "method": "m", "id": True}, False),
    ({"jsonrpc": "2.0", "method": "m", "id": []}, False),
    ({"jsonrpc": "2.0", "method": "m", "id": {}}, False),
    ({"jsonrpc": "2.0", "method": "m", "params": None, "id": 1}, False),
    ({"jsonrpc": "2.0", "method": "m", "params": "x", "id": 1}, False),
    ({"jsonrpc": "2.0", "method": "m", "params": 3, "id": 1}, False),
    ({"jsonrpc": "2.1", "method": "m", "id": 1}, False),
    ({"jsonrpc": 2.0, "method": "m", "id": 1}, False),
    ({"method": "m", "id": 1}, False),
    ({"jsonrpc": "2.0", "id": 1}, False),
    ({"jsonrpc": "2.0", "method": 1, "id": 1}, False),
    ({"jsonrpc": "2.0", "method": None, "id": 1}, False),
    ({"jsonrpc": "2.0", "method": "m", "id": 1, "extra": 0}, False),
    ({"id": 1}, False),
    ([], False),
    (1, False),
    (None, False),
    ("x", False),
]
