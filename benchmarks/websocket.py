"""Calls per second over one WebSocket connection, next to HTTP and framed TCP, and
subscription items per second to one consumer.

    python benchmarks/websocket.py [--seconds 5] [--items 50000]

Starts ``safe-rpc serve`` (auth on, a valid token; WebSocket on the HTTP port) and measures,
one after the other: sequential calls with ``Client``, then sequential calls and 16
concurrent callers with ``AsyncClient``, on each transport (HTTP: keep-alive; TCP and
WebSocket: one connection);
a batch of 100 calls over WebSocket (microseconds per batch, the figure jsonrpsee
publishes); and a subscription that yields ``--items`` integers as fast as it can, read
by one consumer (items per second). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from client_roundtrip import async_rate, start_server, sync_rate

from safe_rpc import AsyncClient, Keyring


async def batch_micros(url: str, token: str, seconds: float, size: int = 100) -> float:
    async with AsyncClient(url, token=token) as client:
        await client.add(1, 2)
        batches = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            async with client.batch() as batch:
                futures = [batch.add(i, 1) for i in range(size)]
            assert futures[-1].result() == size
            batches += 1
        return (time.perf_counter() - started) / batches * 1e6


async def items_rate(url: str, token: str, items: int) -> float:
    async with AsyncClient(url, token=token) as client:
        await client.add(1, 2)
        started = time.perf_counter()
        received = 0
        async with client.subscribe("flood", items, queue=items + 1) as sub:
            async for _ in sub:
                received += 1
        elapsed = time.perf_counter() - started
    assert received == items, received
    return items / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--items", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.json"
        ring = Keyring.generate(audience="bench")
        ring.to_file(keys)
        token = ring.issue("bench", ["bench"], ttl=3600)
        process, http_port, tcp_port = start_server(keys, "ws_bench_app:rpc")
        urls = {
            "HTTP": f"http://127.0.0.1:{http_port}/",
            "TCP": f"tcp://127.0.0.1:{tcp_port}",
            "WebSocket": f"ws://127.0.0.1:{http_port}/",
        }
        rows = []
        try:
            for name, url in urls.items():
                rate = sync_rate(url, token, args.seconds)
                rows.append((f"{name}, sequential, sync Client", f"{rate:,.0f} calls/s"))
                for concurrency in (1, 16):
                    rate = asyncio.run(async_rate(url, token, args.seconds, concurrency))
                    kind = "sequential" if concurrency == 1 else "16 concurrent"
                    rows.append((f"{name}, {kind}, AsyncClient", f"{rate:,.0f} calls/s"))
            micros = asyncio.run(batch_micros(urls["WebSocket"], token, args.seconds))
            rows.append(
                ("WebSocket, batch of 100 calls, AsyncClient", f"{micros:,.0f} µs per batch")
            )
            rate = asyncio.run(items_rate(urls["WebSocket"], token, args.items))
            rows.append(
                ("WebSocket, subscription items to one AsyncClient", f"{rate:,.0f} items/s")
            )
        finally:
            process.terminate()
            process.wait(20)
    print("| transport, load, client | measured |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
