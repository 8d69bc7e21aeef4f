"""The service benchmarks/websocket.py calls: one scoped method and one flood subscription.
Default Limits, except a deep subscription queue so the flood measures throughput rather
than the slow-consumer cut-off."""

from __future__ import annotations

from collections.abc import AsyncIterator

from safe_rpc import Limits, RPCServer

rpc = RPCServer(limits=Limits(subscription_queue=1_000_000))  # `--keys` attaches the keyring


@rpc.method(scopes=["bench"])
def add(a: int, b: int) -> int:
    return a + b


@rpc.subscription(scopes=["bench"])
async def flood(count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i
