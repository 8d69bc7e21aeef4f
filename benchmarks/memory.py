"""Peak RSS while handling one 1 MiB request, above the idle process (issue 7's target:
under 10x the request size).

    python benchmarks/memory.py

Linux only: the peak is read from /proc/self/status (VmHWM) after resetting it through
/proc/self/clear_refs, so only the handling of the request is counted; the request bytes
already exist before the baseline is taken.
"""

from __future__ import annotations

import json
from pathlib import Path

from safe_rpc import RPCServer

MiB = 1024 * 1024


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found")


def measure(name: str, rpc: RPCServer, request: bytes) -> None:
    rpc.dispatch(request)  # warm caches and imports; the first call is not the measured one
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
    idle = _status("VmRSS")
    answer = rpc.dispatch(request)
    peak = _status("VmHWM")
    growth = peak - idle
    print(
        f"| {name} | {len(request):,} | {len(answer or b''):,} | {growth / 1024:,.0f} KiB | "
        f"{growth / len(request):.2f}x |"
    )


def main() -> None:
    rpc = RPCServer()

    @rpc.method(public=True)
    def echo(s: str) -> str:
        return s

    @rpc.method(public=True)
    def total(xs: list[int]) -> int:
        return sum(xs)

    @rpc.method(public=True)
    def nested(tree: dict[str, list[dict[str, str]]]) -> int:
        return len(tree)

    text = "é" * (MiB // 2 - 40)  # 2 bytes each in UTF-8: just under 1 MiB
    message = {"jsonrpc": "2.0", "method": "echo", "params": [text], "id": 1}
    string = json.dumps(message, ensure_ascii=False)
    ints = json.dumps(
        {"jsonrpc": "2.0", "method": "total", "params": [list(range(10_000))], "id": 1}
    )
    tree = {f"k{i}": [{"a": "x" * 40} for _ in range(10)] for i in range(900)}
    nested_request = json.dumps({"jsonrpc": "2.0", "method": "nested", "params": [tree], "id": 1})
    print("| request | bytes | answer bytes | peak RSS growth | growth / request |")
    print("|---|---|---|---|---|")
    measure("1 MiB string, echoed back", rpc, string.encode())
    measure("10,000 ints", rpc, ints.encode())
    measure("nested objects (0.5 MB)", rpc, nested_request.encode())


if __name__ == "__main__":
    main()
