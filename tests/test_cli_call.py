"""``safe-rpc call`` against a real server (issue 5)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import APPS, Server, serve

sys.path.insert(0, str(APPS))
import http_app


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve("http_app:rpc", "--tcp", "127.0.0.1:0") as running:
        yield running


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safe_rpc", "call", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_positional_and_named_calls(server: Server) -> None:
    """JSON arguments by position or name=value; the result is printed as JSON."""
    assert cli(server.url, "add", "2", "3").stdout.strip() == "5"
    assert cli(server.url, "add", "a=2", "b=40").stdout.strip() == "42"
    assert cli(server.url, "echo", "hello").stdout.strip() == '"hello"'


def test_token_and_token_file_over_tcp(server: Server, tmp_path: Path) -> None:
    """--token and --token-file authenticate, over TCP too."""
    token = http_app.keyring.issue("carol", ["me"])
    url = f"tcp://127.0.0.1:{server.tcp_port}"
    assert cli(url, "whoami", "--token", token).stdout.strip() == '"carol via tcp"'
    file = tmp_path / "t"
    file.write_text(token + "\n")
    assert cli(server.url, "whoami", "--token-file", str(file)).stdout.strip() == '"carol via http"'


def test_errors_exit_non_zero_with_code_and_message(server: Server) -> None:
    """An error response prints its code and message and exits 1."""
    result = cli(server.url, "add", "1", '"x"')
    assert result.returncode == 1
    assert result.stderr.startswith('error -32602: "Invalid params"')
    denied = cli(server.url, "whoami")
    assert denied.returncode == 1
    assert "-32001" in denied.stderr


def test_usage_errors_are_one_line(server: Server, tmp_path: Path) -> None:
    """Bad arguments, URLs and unreachable servers: one line, non-zero, no traceback."""
    for args, status in (
        ((server.url, "add", "1", "b=2"), 2),
        ((server.url, "add", "[1,"), 2),
        (("ftp://x", "add"), 2),
        (("http://127.0.0.1:1/", "add"), 3),
        ((server.url, "add", "--token-file", str(tmp_path / "none")), 2),
    ):
        result = cli(*args)
        assert result.returncode == status, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
