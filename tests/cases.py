"""The case tables the tests share, and the server the specification's examples call.

The tables themselves live in ``safe_rpc._audit.cases``: ``safe-rpc audit`` runs the same
cases against any server, so there is one copy (``SPEC_EXAMPLES``, ``ENVELOPES``...).
"""

from __future__ import annotations

from typing import Any

from safe_rpc import RPCServer
from safe_rpc._audit.cases import ENVELOPES, SPEC_EXAMPLES

__all__ = ["ENVELOPES", "SPEC_EXAMPLES", "spec_server"]


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
