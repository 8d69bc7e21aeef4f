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
    out = run("benchmarks/adversarial.py", "--only", "inputs", "--runs", "1")
    assert "FAILED" not in out
    assert out.count("| ok |") == 7


def test_discovery_benchmark_smoke() -> None:
    """discovery.py prints the cached and uncached cost of rpc.discover."""
    out = run("benchmarks/discovery.py", "--quick")
    assert "| cached, token (dispatch) |" in out
    assert "| uncached view (generate + encode) |" in out


def test_adversarial_attacks_smoke() -> None:
    """The attack table runs: a served process, a hostile process, a legitimate client."""
    args = ["--only", "attacks", "--seconds", "1", "--connections", "5", "--attack", "smuggle"]
    out = run("benchmarks/adversarial.py", *args)
    assert "| none (quiet) | 100.0% of" in out
    assert "smuggle: attacker saw" in out


def test_observers_benchmark_smoke() -> None:
    """observers.py measures every observer configuration in process (HTTP part skipped)."""
    out = run("benchmarks/observers.py", "--rounds", "1", "--calls", "200", "--no-http")
    for name in ("no observer", "one no-op observer", "access log", "Prometheus", "OpenTelemetry"):
        assert f"| {name}" in out


def test_store_benchmark_smoke() -> None:
    """store.py serves through each backend and prints the ratio table."""
    out = run("benchmarks/store.py", "--seconds", "0.3", "--rounds", "1")
    assert "| memory |" in out
    assert "| sqlite |" in out


def test_websocket_benchmark_smoke() -> None:
    """websocket.py measures every row over real connections (a short run)."""
    out = run("benchmarks/websocket.py", "--seconds", "0.2", "--items", "500")
    assert out.count("\n| ") == 11  # one row per measurement
    assert "| WebSocket, batch of 100 calls, AsyncClient |" in out
