"""Stream quotes and trades from ``examples.prices``:

    python -m examples.prices_client ws://127.0.0.1:8010/ --token TOKEN [--count 5]

Prints ``count`` EURUSD quotes (the sync client: a plain iterator), then books a trade and
prints it as it comes back on the trades stream (the async client: two things at once).
Reconnecting is left to the caller: after a ``TransportError`` open a new client and
subscribe again.
"""

from __future__ import annotations

import argparse
import asyncio

from safe_rpc import AsyncClient, Client


def quotes(url: str, token: str, count: int) -> None:
    with Client(url, token=token) as c, c.subscribe("prices.ticker", "EURUSD", 0.05) as sub:
        for _, quote in zip(range(count), sub, strict=False):
            print(f"{quote['symbol']} bid={quote['bid']} ask={quote['ask']}")
    # Leaving the block unsubscribed; the connection closed with the client.


async def trade_and_watch(url: str, token: str) -> None:
    async with AsyncClient(url, token=token) as c, c.subscribe("prices.trades") as trades:
        trade_id = await c.call("prices.trade", symbol="USDJPY", amount=3)
        async for trade in trades:
            if trade["id"] == trade_id:
                print(
                    f"trade {trade['id']}: {trade['trader']} {trade['symbol']} x{trade['amount']}"
                )
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="ws://HOST:PORT/ or wss://HOST:PORT/")
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    quotes(args.url, args.token, args.count)
    asyncio.run(trade_and_watch(args.url, args.token))


if __name__ == "__main__":
    main()
