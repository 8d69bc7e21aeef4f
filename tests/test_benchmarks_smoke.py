"""The benchmark scripts run (a smoke run, not a timing: performance is never asserted)."""

from __future__ import annotations

import subprocess
import sys

from servers import REPO_ROOT


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_dispatch_benchmark_smoke() -> None:
    """dispatch.py checks every answer, then prints both tables (peers may be skipped)."""
    out = run(
        "benchmarks/dispatch.py", "--quick", "--rounds", "1",
        "--impls", "floor_stdlib,safe_rpc,json-rpc", "--workloads", "positional,token,parse_error",
    )  # fmt: skip
    assert "FAIL" not in out
    assert "| safe_rpc |" in out
    assert "ratio to floor_stdlib" in out


def test_async_dispatch_benchmark_smoke() -> None:
    """async_dispatch.py times every row (the thread pool and blocking=False included)."""
    out = run("benchmarks/async_dispatch.py", "--rounds", "1", "--calls", "20")
    assert out.count("| dispatch") == 5


def test_adversarial_benchmark_smoke() -> None:
    """adversarial.py answers every hostile input and then serves a normal request."""
    out = run("benchmarks/adversarial.py", "--runs", "1")
    assert "FAILED" not in out
    assert out.count("| ok |") == 7
