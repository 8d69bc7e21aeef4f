"""What a sync handler costs through ``await rpc.dispatch_async`` (the transports' path).

    python benchmarks/async_dispatch.py

One process, rounds interleaved, medians of wall and CPU microseconds per call (CPU time
counts the pool's worker thread too, so it is the figure to compare on a busy machine):
``rpc.dispatch`` of a sync ``add``; ``dispatch_async`` of the same handler (one hop to the
server's thread pool and back), of an async ``add``, of a sync ``add`` registered
``blocking=False`` (inline on the loop), and of a batch of 10 sync ``add`` calls (one hop
for the whole batch).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from safe_rpc import RPCServer

rpc = RPCServer()


@rpc.method(public=True)
def add(a: int, b: int) -> int:
    return a + b


@rpc.method(name="add_async", public=True)
async def add_async(a: int, b: int) -> int:
    return a + b


@rpc.method(name="add_inline", public=True, blocking=False)
def add_inline(a: int, b: int) -> int:
    return a + b


def _request(method: str) -> bytes:
    return b'{"jsonrpc":"2.0","method":"%s","params":[2,3],"id":1}' % method.encode()


ADD = _request("add")
ASYNC = {
    "dispatch_async, sync add": ADD,
    "dispatch_async, async add": _request("add_async"),
    "dispatch_async, sync add with blocking=False": _request("add_inline"),
    "dispatch_async, batch of 10 sync add": b"[" + b",".join([ADD] * 10) + b"]",
}


async def _time_async(payload: bytes, n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await rpc.dispatch_async(payload)
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def _time_sync(payload: bytes, n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        rpc.dispatch(payload)
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def main(rounds: int, calls: int) -> None:
    samples: dict[str, list[tuple[float, float]]] = {"dispatch, sync add": []}
    samples.update({name: [] for name in ASYNC})
    for payload in ASYNC.values():  # warm up the pool and the validators
        await _time_async(payload, 50)
    for _ in range(rounds):
        samples["dispatch, sync add"].append(_time_sync(ADD, calls))
        for name, payload in ASYNC.items():
            samples[name].append(
                await _time_async(payload, calls // 5 if "batch" in name else calls)
            )
    print("| call | wall µs | CPU µs |\n|---|---|---|")
    for name, values in samples.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.calls))
