"""A server with a tiny sync-handler pool, for the thread-starvation and batch tests."""

from __future__ import annotations

import asyncio
import time

from safe_rpc import Limits, RPCServer

LIMITS = Limits(call_timeout=1.0, max_threads=2, max_inflight=64)
rpc = RPCServer(limits=LIMITS)
state = {"started": 0}


@rpc.method(public=True)
def add(a: int, b: int) -> int:
    return a + b


@rpc.method(public=True)
def block(seconds: float) -> str:
    """A sync handler that holds its thread (sleeps past the call deadline if asked)."""
    state["started"] += 1
    time.sleep(seconds)
    return "done"


@rpc.method(public=True)
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@rpc.method(public=True)
async def started() -> int:
    return state["started"]
