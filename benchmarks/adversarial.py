"""Time safe_rpc's dispatcher on hostile 1 MiB-class inputs (issue 2's "done when").

    python benchmarks/adversarial.py [--runs 5]

Each input goes through ``RPCServer.dispatch`` with the default Limits, and then a normal
request must still succeed. Prints the median time of ``--runs`` runs and the answer code.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from safe_rpc import RPCServer
from safe_rpc._audit.cases import hostile_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rpc = RPCServer()

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    normal = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'
    print("| input | bytes | answer | median ms | next request |\n|---|---|---|---|---|")
    for name, data in hostile_inputs().items():
        times = []
        answer = None
        for _ in range(args.runs):
            start = time.perf_counter()
            answer = rpc.dispatch(data)
            times.append(time.perf_counter() - start)
        code = json.loads(answer or b"null")
        summary = code["error"]["code"] if isinstance(code, dict) and "error" in code else "ok"
        after = "ok" if rpc.dispatch(normal) == b'{"jsonrpc":"2.0","result":5,"id":1}' else "FAILED"
        ms = statistics.median(times) * 1000
        print(f"| {name} | {len(data):,} | {summary} | {ms:.1f} | {after} |")


if __name__ == "__main__":
    main()
