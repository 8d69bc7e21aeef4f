"""Small helpers for the dispatcher-level tests of the core (issue 2)."""

from __future__ import annotations

from typing import Any

from support import check_response, request

from safe_rpc import Limits, RPCServer

__all__ = ["answer", "assert_still_serving", "error_code", "make_rpc"]

NORMAL = request("add", [2, 3], id="normal")
NORMAL_ANSWER = {"jsonrpc": "2.0", "result": 5, "id": "normal"}


def make_rpc(limits: Limits | None = None, **options: Any) -> RPCServer:
    """A server with one public ``add`` method, used to prove the server still serves."""
    rpc = RPCServer(limits=limits, **options)

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    return rpc


def answer(rpc: RPCServer, data: bytes, **options: Any) -> Any:
    """Dispatch ``data`` synchronously and return the schema-checked, parsed answer."""
    return check_response(rpc.dispatch(data, **options))


def error_code(rpc: RPCServer, data: bytes, **options: Any) -> int:
    """The error code of the single response to ``data`` (which must be an error)."""
    reply = answer(rpc, data, **options)
    assert isinstance(reply, dict), reply
    assert "error" in reply, reply
    code: int = reply["error"]["code"]
    return code


def assert_still_serving(rpc: RPCServer) -> None:
    """A normal request right after a hostile one is answered normally."""
    assert answer(rpc, NORMAL) == NORMAL_ANSWER
