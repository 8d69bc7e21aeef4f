"""What ``rpc.discover`` costs: microseconds per call, cached and uncached, in process.

    python benchmarks/discovery.py            # a few seconds
    python benchmarks/discovery.py --quick    # a smoke run

Three numbers per service, each the median of several rounds:

- ``cached``: a full ``rpc.dispatch`` of ``rpc.discover`` (parse, authorise, the cached
  document bytes spliced into the response), anonymous and with a token.
- ``uncached``: building and encoding one view from the registered pydantic models (one
  schema-generation pass), what the first call per distinct view pays.
- ``add``: a plain ``add(2, 3)`` dispatch on the same server, for scale.

Absolute times on a shared machine drift; compare the columns within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safe_rpc import Keyring, RPCServer
from safe_rpc._core.json import dumps_strict

DISCOVER = b'{"jsonrpc":"2.0","method":"rpc.discover","id":1}'
ADD = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'


def per_call(func: Callable[[], object], calls: int, rounds: int) -> float:
    """Median over rounds of the mean microseconds per call."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            func()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def bank() -> tuple[RPCServer, Keyring]:
    from examples.bank import rpc

    ring = Keyring.generate(audience="bank")
    rpc.keyring = ring

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    return rpc, ring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    calls, rounds = (50, 1) if args.quick else (2_000, 5)
    rpc, ring = bank()
    token = ring.issue("bench", ["account:read", "account:write"], ttl=3600)
    specs = list(rpc.methods.values())
    every = [s for s in specs if s.public or s.scopes <= {"account:read", "account:write"}]

    def uncached() -> bytes:
        from safe_rpc._discovery import build_document

        return dumps_strict(build_document(every, title="Bank", version="1"))

    rows = [
        (
            "cached lookup only (Discovery.answer)",
            per_call(lambda: rpc.discovery.answer(None), calls, rounds),
        ),
        ("cached, anonymous (dispatch)", per_call(lambda: rpc.dispatch(DISCOVER), calls, rounds)),
        (
            "cached, token (dispatch)",
            per_call(lambda: rpc.dispatch(DISCOVER, token=token), calls, rounds),
        ),
        ("uncached view (generate + encode)", per_call(uncached, max(calls // 20, 5), rounds)),
        ("add(2, 3), anonymous (dispatch)", per_call(lambda: rpc.dispatch(ADD), calls, rounds)),
        (
            "add(2, 3), token (dispatch)",
            per_call(lambda: rpc.dispatch(ADD, token=token), calls, rounds),
        ),
    ]
    size = len(rpc.dispatch(DISCOVER, token=token) or b"")
    print(f"examples.bank, {len(every)} methods, full document {size} bytes")
    print("| what | µs per call |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.1f} |")


if __name__ == "__main__":
    main()
