"""The example service answers in process, and its answers conform to the schemas."""

from __future__ import annotations

from support import check_response, request

from examples.calculator import rpc


def test_calculator_add_by_position() -> None:
    assert check_response(rpc.dispatch(request("add", [2, 3]))) == {
        "jsonrpc": "2.0",
        "result": 5,
        "id": 1,
    }


def test_calculator_refuses_string_for_int() -> None:
    answer = check_response(rpc.dispatch(request("add", ["2", 3])))
    assert answer["error"]["code"] == -32602
