"""A price service that streams quotes: ``python -m examples.prices [HOST:PORT]``.

Subscriptions ride on WebSocket (on the HTTP port and path) and on framed TCP:

* ``prices.ticker`` streams a quote for one symbol every ``interval`` seconds;
* ``prices.trades`` streams every trade booked with ``prices.trade``, through an event
  channel (``rpc.publish`` -> ``ctx.events``), so one caller's trade reaches every
  subscriber.

It prints a development token (generated at start-up, valid one hour) and the client
line: ``python -m examples.prices_client ws://127.0.0.1:8010/ --token TOKEN``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from safe_rpc import Context, Keyring, RPCServer, serve

keyring = Keyring.generate(audience="prices")  # development only: a new key every start
rpc = RPCServer(keyring=keyring)

Symbol = Literal["EURUSD", "GBPUSD", "USDJPY"]
_START = {"EURUSD": 1.0850, "GBPUSD": 1.2700, "USDJPY": 151.20}
_trade_ids = itertools.count(1)


class Quote(BaseModel):
    symbol: Symbol
    bid: float
    ask: float
    at: datetime


class Trade(BaseModel):
    id: int
    trader: str
    symbol: Symbol
    amount: int


@rpc.subscription(name="prices.ticker", scopes=["prices:read"])
async def ticker(
    symbol: Symbol, interval: Annotated[float, Field(ge=0.01, le=60)] = 1.0
) -> AsyncIterator[Quote]:
    """A quote for ``symbol`` every ``interval`` seconds (a random walk), until unsubscribed."""
    walk = random.Random(symbol)  # noqa: S311 - made-up prices, not secrets
    mid = _START[symbol]
    while True:
        mid *= 1 + walk.gauss(0, 0.0002)
        spread = mid * 0.00005
        yield Quote(symbol=symbol, bid=round(mid - spread, 5), ask=round(mid + spread, 5),
                    at=datetime.now(UTC))  # fmt: skip
        await asyncio.sleep(interval)


@rpc.subscription(name="prices.trades", scopes=["prices:read"])
async def trades(ctx: Context) -> AsyncIterator[Trade]:
    """Every trade booked from now on, by anyone."""
    async for item in ctx.events("trades"):
        yield Trade.model_validate(item)


@rpc.method(name="prices.trade", scopes=["prices:trade"])
async def trade(ctx: Context, symbol: Symbol, amount: Annotated[int, Field(gt=0)]) -> int:
    """Book a trade (published to every ``prices.trades`` subscriber); returns its id."""
    assert ctx.principal is not None
    booked = Trade(id=next(_trade_ids), trader=ctx.principal.subject, symbol=symbol,
                   amount=amount)  # fmt: skip
    await rpc.publish("trades", booked)
    return booked.id


def main(argv: list[str]) -> None:
    address = argv[0] if argv else "127.0.0.1:8010"
    token = keyring.issue("dev", ["prices:read", "prices:trade"], ttl=3600)
    port = address.rsplit(":", 1)[1]
    print(f"development token (valid 1 hour): {token}")
    print("stream prices with the client:")
    print(f"  python -m examples.prices_client ws://127.0.0.1:{port}/ --token {token}", flush=True)
    serve(rpc, http=address)


if __name__ == "__main__":
    main(sys.argv[1:])
