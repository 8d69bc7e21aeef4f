"""safe_rpc under hostile peers, in both directions (SECURITY.md, README "Under attack").

    python benchmarks/adversarial.py                   # all three tables (~3 minutes)
    python benchmarks/adversarial.py --only inputs --runs 5
    python benchmarks/adversarial.py --only attacks --seconds 10 --connections 100
    python benchmarks/adversarial.py --only client

``inputs``: hostile 1 MiB-class messages through ``RPCServer.dispatch`` (default Limits),
each followed by a normal request; the median time of ``--runs`` runs and the answer code.

``attacks``: a real ``safe-rpc serve`` (default Limits) attacked for ``--seconds`` by
``--connections`` hostile connections from 127.0.0.2 (benchmarks/attacks.py, its own
process), while a legitimate client on 127.0.0.1 makes 20 calls a second, each on a new
connection. Per attack: the legitimate client's success rate and p99 latency against the
same figures without attack, and the growth of the server's RSS.

``client``: ``Client`` against hostile fake servers on loopback: a decompression bomb, an
answer dripped a byte a second, error data that does not fit its class.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from adversarial_net import attacks_table, client_table

from safe_rpc import RPCServer
from safe_rpc._audit.cases import hostile_inputs


def inputs_table(runs: int) -> None:
    rpc = RPCServer()

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    normal = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'
    print("| input | bytes | answer | median ms | next request |\n|---|---|---|---|---|")
    for name, data in hostile_inputs().items():
        times = []
        answer = None
        for _ in range(runs):
            start = time.perf_counter()
            answer = rpc.dispatch(data)
            times.append(time.perf_counter() - start)
        code = json.loads(answer or b"null")
        summary = code["error"]["code"] if isinstance(code, dict) and "error" in code else "ok"
        after = "ok" if rpc.dispatch(normal) == b'{"jsonrpc":"2.0","result":5,"id":1}' else "FAILED"
        ms = statistics.median(times) * 1000
        print(f"| {name} | {len(data):,} | {summary} | {ms:.1f} | {after} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["inputs", "attacks", "client"])
    parser.add_argument("--runs", type=int, default=5, help="inputs: runs per input")
    parser.add_argument("--seconds", type=float, default=10.0, help="attacks: per attack")
    parser.add_argument("--connections", type=int, default=100, help="attacks: hostile")
    parser.add_argument("--attack", action="append", help="attacks: only these (repeat)")
    args = parser.parse_args()
    if args.only in (None, "inputs"):
        inputs_table(args.runs)
    if args.only in (None, "attacks"):
        print()
        attacks_table(args.seconds, args.connections, args.attack)
    if args.only in (None, "client"):
        print()
        client_table()


if __name__ == "__main__":
    main()
