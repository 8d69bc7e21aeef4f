"""``Limits`` (README: Limits): every field validated at construction, and each limit the
core enforces shown holding, before the work it bounds."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
from core_support import answer, assert_still_serving, error_code, make_rpc
from support import request

from safe_rpc import ConfigError, Limits, RPCServer
from safe_rpc._core.json import JSONError, StrictJSON

FIELDS = [f.name for f in dataclasses.fields(Limits)]
INT_FIELDS = [f.name for f in dataclasses.fields(Limits) if f.type == "int"]

DOCUMENTED_DEFAULTS = {
    "max_request_bytes": 1024 * 1024,
    "max_response_bytes": 4 * 1024 * 1024,
    "max_batch": 100,
    "max_depth": 32,
    "max_object_members": 1000,
    "max_array_items": 10_000,
    "call_timeout": 30.0,
    "header_timeout": 10.0,
    "body_timeout": 30.0,
    "keepalive_timeout": 5.0,
    "tcp_preauth_frame_bytes": 8 * 1024,
    "tcp_auth_timeout": 10.0,
    "tcp_frame_timeout": 30.0,
    "tcp_idle_timeout": 120.0,
    "max_connections": 100,
    "max_inflight_per_connection": 16,
    "max_inflight": 256,
    "max_threads": 32,
}


def test_defaults_are_the_spec_values() -> None:
    """Every default the README's Limits table names has its documented value."""
    limits = Limits()
    for name, value in DOCUMENTED_DEFAULTS.items():
        assert getattr(limits, name) == value, name
    assert set(DOCUMENTED_DEFAULTS) <= set(FIELDS)


def test_limits_are_frozen() -> None:
    """A Limits object cannot be changed after construction."""
    limits = Limits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_batch = 1_000_000  # type: ignore[misc]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(
    "value", [0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "10", None]
)
def test_every_field_refuses_bad_values(field: str, value: Any) -> None:
    """Non-positive, non-finite, boolean and non-numeric values are refused for every field."""
    with pytest.raises(ValueError, match=f"Limits.{field}"):
        Limits(**{field: value})


@pytest.mark.parametrize("field", INT_FIELDS)
def test_size_and_count_fields_must_be_whole(field: str) -> None:
    """Integer fields refuse fractional values."""
    with pytest.raises(ValueError, match="whole number"):
        Limits(**{field: 1.5})  # type: ignore[arg-type]


def test_time_fields_accept_ints_and_floats() -> None:
    """Times are seconds: 1 and 0.25 are both fine."""
    assert Limits(call_timeout=1).call_timeout == 1
    assert Limits(header_timeout=0.25).header_timeout == 0.25


def test_max_depth_hard_ceiling() -> None:
    """max_depth may be 128 but not more."""
    assert Limits(max_depth=128).max_depth == 128
    with pytest.raises(ValueError, match="at most 128"):
        Limits(max_depth=129)


def test_preauth_frame_cannot_exceed_request_limit() -> None:
    """The TCP pre-auth frame limit cannot be larger than the request limit."""
    assert Limits(max_request_bytes=8192, tcp_preauth_frame_bytes=8192)
    with pytest.raises(ValueError, match="tcp_preauth_frame_bytes"):
        Limits(max_request_bytes=4096)


def test_server_refuses_something_that_is_not_limits() -> None:
    """RPCServer(limits=...) takes a Limits instance only."""
    with pytest.raises(ConfigError):
        RPCServer(limits={"max_batch": 1})  # type: ignore[arg-type]
    assert RPCServer().limits == Limits()


def test_max_request_bytes_checked_before_parsing() -> None:
    """A message one byte over the limit is -32007 even when it is not JSON at all."""
    normal = request("add", [2, 3], id="normal")
    rpc = make_rpc(Limits(max_request_bytes=len(normal), tcp_preauth_frame_bytes=64))
    assert error_code(rpc, b"{" * (len(normal) + 1)) == -32007
    reply = answer(rpc, b" " + normal)  # one byte over, and perfectly valid
    assert reply == {
        "jsonrpc": "2.0",
        "error": {"code": -32007, "message": "Request too large"},
        "id": None,
    }
    assert error_code(rpc, b"{" * len(normal)) == -32700  # at the limit: parsed
    assert_still_serving(rpc)


def _spy_server(limits: Limits) -> tuple[RPCServer, list[int]]:
    calls: list[int] = []
    rpc = make_rpc(limits)

    @rpc.method(public=True)
    def spy(n: int) -> str:
        calls.append(n)
        return "x" * n

    return rpc, calls


def _batch(*elements: bytes) -> bytes:
    return b"[" + b",".join(elements) + b"]"


def test_max_batch_rejects_whole_batch_before_running_anything() -> None:
    """max_batch + 1 elements: one -32010 and zero executions; max_batch elements all run."""
    rpc, calls = _spy_server(Limits(max_batch=3))
    over = _batch(*(request("spy", [i], id=i) for i in range(4)))
    assert error_code(rpc, over) == -32010
    notes = _batch(*(request("spy", [i], id="notification") for i in range(4)))
    assert error_code(rpc, notes) == -32010  # even a batch of notifications is answered
    assert calls == []
    at_limit = _batch(*(request("spy", [i], id=i) for i in range(3)))
    assert [r["id"] for r in answer(rpc, at_limit)] == [0, 1, 2]
    assert calls == [0, 1, 2]
    assert_still_serving(rpc)


def test_max_response_bytes_single_response() -> None:
    """A single result over the response limit is replaced by -32008 with its id."""
    rpc, calls = _spy_server(Limits(max_response_bytes=100))
    assert answer(rpc, request("spy", [10], id=5))["result"] == "x" * 10
    assert answer(rpc, request("spy", [200], id=5)) == {
        "jsonrpc": "2.0",
        "error": {"code": -32008, "message": "Response too large"},
        "id": 5,
    }
    assert rpc.dispatch(request("spy", [200], id="notification")) is None
    assert calls == [10, 200, 200]
    assert_still_serving(rpc)


def test_max_response_bytes_batch_stops_executing() -> None:
    """In a batch, once the answer passes the limit, later requests are not executed."""
    rpc, calls = _spy_server(Limits(max_response_bytes=200))
    batch = _batch(
        request("spy", [10], id=1),
        request("spy", [150], id=2),  # pushes the answer over 200 bytes
        request("spy", [1], id=3),
        request("spy", [1], id="notification"),
        request("nope", [1], id=4),
    )
    replies = answer(rpc, batch)
    assert calls == [10, 150]
    assert replies[0] == {"jsonrpc": "2.0", "result": "x" * 10, "id": 1}
    # Every answer past the cap is -32008, whatever it would have been.
    assert [r["error"]["code"] for r in replies[1:]] == [-32008, -32008, -32008]
    assert [r["id"] for r in replies] == [1, 2, 3, 4]
    assert_still_serving(rpc)


def _params_of_depth(depth: int) -> bytes:
    # The envelope object is level 1 and the params array level 2.
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return (
        json.dumps({"jsonrpc": "2.0", "method": "count", "params": [0], "id": 1})
        .replace("[0]", "[" + inner + "]" if inner else "[]")
        .encode()
    )


@pytest.mark.parametrize(
    ("limits", "ok", "too_much"),
    [
        (Limits(max_depth=5), _params_of_depth(5), _params_of_depth(6)),
        (
            Limits(max_object_members=4),
            request("count", {"a": {"b": 1, "c": 2, "d": 3, "e": 4}}),
            request("count", {"a": {"b": 1, "c": 2, "d": 3, "e": 4, "f": 5}}),
        ),
        (
            Limits(max_array_items=5),
            request("count", [[1, 2, 3, 4, 5]]),
            request("count", [[1, 2, 3, 4, 5, 6]]),
        ),
        (
            Limits(max_array_items=5),
            request("count", {"a": [[1, 2, 3, 4, 5]]}),
            request("count", {"a": [[1, 2, 3, 4, 5, [1, 2, 3, 4, 5, 6]]]}),
        ),
    ],
    ids=["depth", "members", "items", "nested-items"],
)
def test_json_shape_limits(limits: Limits, ok: bytes, too_much: bytes) -> None:
    """Depth, members per object and items per array: at the limit fine, past it -32700."""
    rpc = make_rpc(limits)

    @rpc.method(public=True)
    def count(a: Any) -> int:
        return len(json.dumps(a))

    assert "result" in answer(rpc, ok)
    assert error_code(rpc, too_much) == -32700
    assert_still_serving(rpc)


def test_array_item_scan_ignores_commas_in_strings() -> None:
    """Commas inside strings never count as array items, at the top level or nested."""
    parser = StrictJSON(max_depth=4, max_object_members=4, max_array_items=2)
    assert parser.loads(b'"a,b,c,d"') == "a,b,c,d"
    assert parser.loads(b'{"k":"a,b,c","l":[1,2]}') == {"k": "a,b,c", "l": [1, 2]}
    with pytest.raises(JSONError):
        parser.loads(b'{"k":"a,b,c","l":[1,2,3]}')
