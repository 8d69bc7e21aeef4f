"""Round-trip calls per second of the clients against one real server process.

    python benchmarks/client_roundtrip.py [--seconds 5]

Starts ``safe-rpc serve`` with HTTP and TCP on 127.0.0.1 (auth on, a valid token), then
measures, one after the other: ``Client`` over HTTP (sequential calls, keep-alive),
``AsyncClient`` over HTTP (16 concurrent callers), ``AsyncClient`` over TCP (sequential, and
16 concurrent callers on one connection). Prints calls per second for each.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
from asyncio import run
from pathlib import Path

APPS = Path(__file__).resolve().parent.parent / "tests" / "apps"
sys.path.insert(0, str(APPS))

from safe_rpc import AsyncClient, Client, Keyring  # noqa: E402


def start_server(
    keys: Path, target: str = "bench_app:rpc"
) -> tuple[subprocess.Popen[str], int, int]:
    command = [
        sys.executable, "-m", "safe_rpc", "serve", target, "--keys", str(keys),
        "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=APPS, stdout=subprocess.PIPE, text=True)
    ports: dict[str, int] = {}
    assert process.stdout is not None
    while len(ports) < 2:
        line = process.stdout.readline()
        if not line:
            raise SystemExit("server did not start")
        for scheme, port in re.findall(r"listening on (\w+)://[^:]+:(\d+)/", line):
            ports[scheme] = int(port)
    return process, ports["http"], ports["tcp"]


def sync_rate(url: str, token: str, seconds: float) -> float:
    with Client(url, token=token) as client:
        calls, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            client.add(1, 2)
            calls += 1
    return calls / seconds


async def async_rate(url: str, token: str, seconds: float, concurrency: int) -> float:
    async with AsyncClient(url, token=token) as client:
        calls = 0
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal calls
            while time.perf_counter() < end:
                await client.add(1, 2)
                calls += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.json"
        ring = Keyring.generate(audience="bench")
        ring.to_file(keys)
        token = ring.issue("bench", ["bench"], ttl=3600)
        process, http_port, tcp_port = start_server(keys)
        try:
            http, tcp = f"http://127.0.0.1:{http_port}/", f"tcp://127.0.0.1:{tcp_port}"
            seconds = args.seconds
            rows = [
                ("Client, HTTP, sequential", sync_rate(http, token, seconds)),
                ("AsyncClient, HTTP, 16 concurrent", run(async_rate(http, token, seconds, 16))),
                ("AsyncClient, TCP, sequential", run(async_rate(tcp, token, seconds, 1))),
                (
                    "AsyncClient, TCP, 16 concurrent, 1 conn",
                    run(async_rate(tcp, token, seconds, 16)),
                ),
            ]
        finally:
            process.terminate()
            process.wait(20)
    print("| client and transport | calls/s |\n|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
