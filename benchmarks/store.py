"""HTTP calls per second with each store backend, as a ratio to ``MemoryStore``.

    python benchmarks/store.py [--seconds 3] [--rounds 2]

Starts one ``safe-rpc serve`` process per backend (``memory``, ``sqlite:///...``, and
``redis://`` on a redis-server this script starts on a free loopback port; skipped when
redis-server is not installed), all with the same key file, then measures in interleaved
rounds 8 keep-alive HTTP connections with one call in flight each: ``add`` (a scoped call; no
store round trip: revocations come from the local cache) and ``add_quota`` (the same under a
quota that is counted but never reached: one store round trip per call).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
sys.path.insert(0, str(ROOT / "tests"))

from redis_support import RedisServer  # noqa: E402

from safe_rpc import Keyring  # noqa: E402


def start(store: str, keys: Path) -> tuple[subprocess.Popen[str], int]:
    command = [
        sys.executable, "-m", "safe_rpc", "serve", "bench_app:rpc", "--keys", str(keys),
        "--http", "127.0.0.1:0", "--store", store, "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=APPS, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"server with --store {store} did not start")
        found = re.search(r"listening on http://[^:]+:(\d+)/", line)
        if found:
            return process, int(found[1])


async def rate(port: int, token: str, method: str, seconds: float) -> float:
    """Calls per second from 8 keep-alive connections sending one call at a time (a raw
    HTTP/1.1 client: the server, not a client library, is what is measured)."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": [1, 2], "id": 1}).encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    calls = 0
    end = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal calls
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < end:
            writer.write(head + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", headers.lower())[1])  # type: ignore[index]
            answer = json.loads(await reader.readexactly(length))
            assert answer["result"] == 3, answer
            calls += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(8)))
    return calls / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.json"
        ring = Keyring.generate(audience="bench")
        ring.to_file(keys)
        token = ring.issue("bench", ["bench"], ttl=3600)
        stores = {"memory": "memory", "sqlite": f"sqlite:///{tmp}/state.db"}
        redis = None
        if shutil.which("redis-server"):
            redis = RedisServer(Path(tmp))
            redis.start()
            stores["redis"] = redis.url
        else:
            print("redis-server not on PATH: the redis row is skipped")
        servers = {name: start(url, keys) for name, url in stores.items()}
        results: dict[tuple[str, str], list[float]] = {}
        try:
            for _ in range(args.rounds):
                for method in ("add", "add_quota"):
                    for name, (_, port) in servers.items():
                        measured = asyncio.run(rate(port, token, method, args.seconds))
                        results.setdefault((name, method), []).append(measured)
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(20)
            if redis is not None:
                redis.stop()
    best = {key: max(values) for key, values in results.items()}
    print("| store | add calls/s | ratio | add_quota calls/s | ratio |")
    print("|---|---|---|---|---|")
    for name in servers:
        plain, quota = best[(name, "add")], best[(name, "add_quota")]
        print(
            f"| {name} | {plain:,.0f} | {plain / best[('memory', 'add')]:.2f}x "
            f"| {quota:,.0f} | {quota / best[('memory', 'add_quota')]:.2f}x |"
        )


if __name__ == "__main__":
    main()
