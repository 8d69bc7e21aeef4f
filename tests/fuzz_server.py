"""The server every fuzz test attacks: a few public methods of each kind."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

from safe_rpc import Context, RPCServer

NORMAL = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":"next"}'
NORMAL_ANSWER = b'{"jsonrpc":"2.0","result":5,"id":"next"}'


def make_fuzz_server() -> RPCServer:
    rpc = RPCServer()

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    @rpc.method(public=True)
    async def echo(ctx: Context, x: str = "") -> str:
        return x

    @rpc.method(public=True)
    def notify_me() -> None:
        return None

    @rpc.method(public=True)
    def boom() -> int:
        raise RuntimeError("secret text that must stay in the log")

    return rpc


def traced_peak(func: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``func`` and return its result with the peak Python memory it allocated."""
    tracemalloc.start()
    try:
        result = func()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak
