"""The server the WebSocket tests attack: short deadlines, small caps, a test clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from pydantic import BaseModel

from safe_rpc import Context, Keyring, Limits, RPCServer


class Clock:
    """Wall-clock time plus an offset the tests move (token expiry mid-connection)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


clock = Clock()
keyring = Keyring({"test": b"w" * 32}, audience="ws-tests", clock=clock)

LIMITS = Limits(
    max_request_bytes=64 * 1024,
    call_timeout=5.0,
    tcp_auth_timeout=1.0,
    tcp_idle_timeout=4.0,
    write_timeout=2.0,
    max_connections=8,
    max_connections_per_client=4,
    max_inflight_per_connection=4,
    max_subscriptions_per_connection=3,
    subscription_queue=8,
    max_pending_bytes_per_connection=256 * 1024,
    ws_ping_interval=0.5,
    ws_ping_timeout=1.0,
)
rpc = RPCServer(keyring=keyring, limits=LIMITS)
state = {"running": 0, "peak": 0}


class Price(BaseModel):
    symbol: str
    price: float


@rpc.method(public=True)
def add(a: int, b: int) -> int:
    return a + b


@rpc.method(scopes=["me"])
def whoami(ctx: Context) -> str:
    assert ctx.principal is not None
    return f"{ctx.principal.subject} via {ctx.transport}"


@rpc.method(public=True)
async def slow(seconds: float) -> int:
    """Records the most calls running at once (the in-flight cap test)."""
    state["running"] += 1
    state["peak"] = max(state["peak"], state["running"])
    try:
        await asyncio.sleep(seconds)
    finally:
        state["running"] -= 1
    return state["peak"]


@rpc.method(public=True)
def blob(size: int) -> str:
    return "x" * size


@rpc.subscription(scopes=["prices"])
async def ticker(ctx: Context, symbol: str, every: float = 0.05) -> AsyncIterator[Price]:
    """A price every ``every`` seconds, forever."""
    n = 0
    while True:
        n += 1
        yield Price(symbol=symbol, price=1.0 + n / 1000)
        await asyncio.sleep(every)


@rpc.subscription(scopes=["prices"])
async def burst(size: int, count: int) -> AsyncIterator[str]:
    """``count`` items of ``size`` bytes as fast as they can be made (a slow consumer's
    nightmare)."""
    for _ in range(count):
        yield "b" * size


@rpc.subscription(public=True)
async def countdown(n: int) -> AsyncIterator[int]:
    for i in range(n, 0, -1):
        yield i


@rpc.subscription(public=True)
async def broken() -> AsyncIterator[int]:
    yield 1
    raise RuntimeError("secret text that must stay in the log")


@rpc.subscription(public=True)
async def news(ctx: Context, topic: str) -> AsyncIterator[str]:
    async for item in ctx.events(f"news.{topic}"):
        yield str(item["headline"])


def token(
    scopes: tuple[str, ...] = ("me", "prices"), ttl: int = 600, subject: str = "alice"
) -> str:
    return keyring.issue(subject, scopes, ttl=ttl)


@rpc.method(public=True)
async def announce(topic: str, headline: str) -> bool:
    await rpc.publish(f"news.{topic}", {"headline": headline})
    return True
