"""Usage and store errors of the CLI subcommands: each is one line on stderr naming what to
do, exit status 2, and nothing is sent or written."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from safe_rpc import SQLiteStore
from safe_rpc._cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # bound, never listening: refused once closed


def _usage_error(err: str, command: str, message: str) -> None:
    assert err.startswith(f"safe-rpc {command}: error: ")
    assert message in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "add", "--params", "3"], "must be a JSON array or object"),
        (["--corpus", "/nonexistent/JSONTestSuite"], "not a directory"),
        (["--token-file", "/nonexistent/token"], "cannot read /nonexistent/token"),
        (["--expect", "[1,"], "need --method"),
    ],
)
def test_audit_usage_errors(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    status, out, err = run(capsys, "audit", f"http://127.0.0.1:{_closed_port()}/", *extra)
    assert status == 2
    assert out == ""
    _usage_error(err, "audit", message)


def test_audit_missing_cafile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    status, _, err = run(capsys, "audit", "https://127.0.0.1:1/", "--cafile", str(missing))
    assert status == 2
    _usage_error(err, "audit", "cannot read --cafile")


def test_revoke_and_revocations_with_an_unreachable_store(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    status, out, err = run(capsys, "revoke", "--store", url, "--kid", "k1")
    assert status == 2
    assert out == ""
    assert err.startswith("safe-rpc revoke: error: ")
    status, out, err = run(capsys, "revocations", "--store", url)
    assert status == 2
    assert out == ""
    assert err.startswith("safe-rpc revocations: error: ")


def test_revocations_lists_kids_escaped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    status, out, _ = run(capsys, "revoke", "--store", f"sqlite:///{path}", "--kid", "k1")
    assert status == 0
    assert out.startswith("revoked kid k1 in sqlite:///")
    store = SQLiteStore(path)
    store.revoke("kid", "evil\x1b[2J", None)  # written by anyone with access to the store
    store.close()
    status, out, _ = run(capsys, "revocations", "--store", f"sqlite:///{path}")
    assert status == 0
    lines = out.splitlines()
    assert "kid      'k1'" in lines
    assert "kid      'evil\\x1b[2J'" in lines  # escaped: cannot drive the terminal (SR-43)
    assert "\x1b" not in out


def test_serve_refuses_an_unknown_log_level_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAFE_RPC_LOG_LEVEL", "loud")
    status, _, err = run(capsys, "serve", "examples.calculator:rpc")
    assert status == 2
    _usage_error(err, "serve", "--log-level must be debug, info or warning")


def test_stubs_token_with_a_module_target(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "stubs", "examples.calculator:rpc", "--token", "x.y.z")
    assert status == 2
    _usage_error(err, "stubs", "--token is for a URL")


def test_call_refuses_a_token_that_is_not_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"
    status, _, err = run(capsys, "call", url, "add", "1", "2", "--token", "two\nlines")
    assert status == 2
    _usage_error(err, "call", "--token is not a bearer token")
