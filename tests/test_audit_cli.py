"""``safe-rpc audit`` as a command: exit statuses, output forms, and the rules that make it
safe to point at production (budget, rate, method names, dry run, escaped evidence)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cases
import pytest
import trustme
from audit_support import calculator, running_asgi
from broken_server import BrokenServer
from peers import Receive, Scope, Send, json_rpc_app
from servers import REPO_ROOT, serve
from strategies import _INSERTS
from tokens_support import make_keyring
from websockets.exceptions import ConnectionClosed

from safe_rpc._audit import cases as audit_cases
from safe_rpc._audit.budget import Budget, BudgetExhausted
from safe_rpc._audit.checks import Options
from safe_rpc._audit.engine import plan
from safe_rpc._cli.main import main
from safe_rpc._transports.engine import config_options
from safe_rpc._transports.http import ASGIApp

FAST = ["--rate", "1000", "--slow-timeout", "1", "--timeout", "5"]


@contextmanager
def safe_rpc_http(*, websocket: bool = True, **config: Any) -> Iterator[int]:
    rpc = calculator()
    app = ASGIApp(rpc, websocket=websocket)
    options = config_options(rpc.limits, websocket=websocket)
    with running_asgi(app, **options, **config) as (port, _):
        yield port


class Recording(BrokenServer):
    """The broken server with no defect, keeping every body it was sent."""

    def __init__(self) -> None:
        super().__init__(set())
        self.bodies: list[bytes] = []

    def handle(self, body: bytes) -> bytes | None:
        self.bodies.append(body)
        return super().handle(body)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["audit", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_exit_0_against_safe_rpc_text_grouped_by_suite(capsys: pytest.CaptureFixture[str]) -> None:
    with safe_rpc_http() as port:
        url = f"http://127.0.0.1:{port}/"
        args = ["--method", "add", "--params", "[2, 3]", "--expect", "5"]
        status, out, _ = run(
            capsys, url, "--suite", "conformance", "--suite", "strict-json", *args, *FAST
        )
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"safe-rpc audit of {url} (http)")
    assert "conformance" in lines
    assert "strict-json" in lines
    assert lines[-1].startswith("summary: 60 checks: 60 pass, 0 fail, 0 warn, 0 skip;")
    assert "  pass  c.spec.mixed-batch " in out
    assert "JSON-RPC 2.0 §6" in out


def test_exit_1_against_a_peer_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    with running_asgi(json_rpc_app()) as (port, _):
        status, out, _ = run(
            capsys, f"http://127.0.0.1:{port}/", "--suite", "conformance", "--json", *FAST
        )
    assert status == 1
    document = json.loads(out)
    assert document["exit"] == 1
    assert document["summary"]["fail"] >= 1
    verdicts = {c["id"]: c["verdict"] for c in document["checks"]}
    assert verdicts["c.spec.invalid-batch"] == "fail"
    assert verdicts["c.spec.positional-parameters"] == "skip"  # no --method given
    assert all(len(c["evidence"]) <= 200 for c in document["checks"])


def test_exit_2_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        status, out, err = run(capsys, f"http://127.0.0.1:{port}/", *FAST)
    assert status == 2
    assert out == ""
    assert err.startswith("safe-rpc audit: error: ")
    assert "cannot connect" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ftp://127.0.0.1:21/"], "unsupported scheme"),
        (["http://10.0.0.1-20:80/"], "one host"),
        (["http://*.example.com/"], "one host"),
        (["tcp://127.0.0.1"], "needs a port"),
        (["http://127.0.0.1:1/", "--method", "add", "--params", "[2,"], "--params must be JSON"),
        (["http://127.0.0.1:1/", "--params", "[2]"], "need --method"),
        (["http://127.0.0.1:1/", "--max-requests", "0"], "must be positive"),
    ],
)
def test_exit_2_on_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert message in err


def test_ws_against_a_server_without_websocket_is_a_connection_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """safe_rpc's HTTP server with WebSocket off refuses the handshake: exit 2, one line."""
    with safe_rpc_http(websocket=False) as port:
        status, out, err = run(capsys, f"ws://127.0.0.1:{port}/", *FAST)
        assert main(["call", f"http://127.0.0.1:{port}/", "add", "2", "3"]) == 0  # still serving
    assert status == 2
    assert out == ""
    assert "refused the WebSocket handshake (HTTP 405)" in err
    assert capsys.readouterr().out.strip() == "5"


def test_ws_against_safe_rpc_websocket(capsys: pytest.CaptureFixture[str]) -> None:
    """safe_rpc serves WebSocket on its HTTP port by default: every check passes over ws://.
    The three non-UTF-8 probes must go as binary messages, which safe_rpc refuses by closing
    with 1003 (RFC 6455 section 7.4.1: JSON-RPC over WebSocket is text); the audit counts
    that close as a refusal."""
    with safe_rpc_http() as port:
        status, out, err = run(capsys, f"ws://127.0.0.1:{port}/", *FAST)
        assert main(["call", f"http://127.0.0.1:{port}/", "add", "2", "3"]) == 0  # still serving
    failed = sorted(line.split()[1] for line in out.splitlines() if line.strip()[:4] == "FAIL")
    assert failed == [], out + err
    refused = [line for line in out.splitlines() if "s.invalid-utf8" in line]
    assert len(refused) == 1, out
    assert "WebSocket close 1003" in refused[0], out
    assert status == 0


def test_ws_transport_against_a_websocket_server(capsys: pytest.CaptureFixture[str]) -> None:
    """Every suite over a real WebSocket server (websockets' own, one message each way,
    the broken server's handler with no defect): the verdicts are pinned."""
    from websockets.sync.server import ServerConnection, serve

    broken = BrokenServer(set())

    def handler(connection: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # 1009 for the 2 MiB message
            for message in connection:
                answer = broken.handle(message.encode() if isinstance(message, str) else message)
                if answer is not None:
                    connection.send(answer.decode())

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        args = ["--method", "add", "--params", "[2, 3]", "--expect", "5", "--json"]
        status, out, _ = run(capsys, f"ws://127.0.0.1:{port}/", *args, *FAST)
        server.shutdown()
    verdicts = {c["id"]: c["verdict"] for c in json.loads(out)["checks"]}
    assert status == 0
    assert {i: v for i, v in verdicts.items() if v != "pass"} == {
        "s.lone-surrogate": "warn",  # the broken server parses with Python's json
        "h.invalid-params-text": "skip",
        "l.slow-headers": "warn",  # websockets allows 10 s for the handshake
        "l.slow-body": "skip",
        "l.idle-connection": "warn",
    }


def test_https_with_cafile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    files = {"ssl_certfile": str(tmp_path / "server.pem")}
    with safe_rpc_http(ssl_certfile=files["ssl_certfile"]) as port:
        url = f"https://127.0.0.1:{port}/"
        untrusted, _, err = run(capsys, url, "--suite", "conformance", *FAST)
        status, out, _ = run(
            capsys, url, "--suite", "conformance", "--cafile", str(tmp_path / "ca.pem"), *FAST
        )
    assert untrusted == 2
    assert "pass --cafile" in err
    assert status == 0
    assert "(https)" in out.splitlines()[0]


def test_dry_run_lists_every_check_and_sends_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        status, out, _ = run(capsys, f"tcp://127.0.0.1:{port}", "--dry-run")
        listener.settimeout(0.3)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert status == 0
    for check in plan(Options(), ["conformance", "strict-json", "hostile", "limits"]):
        assert f"  {check.id} " in out
    assert "nothing is sent" in out.splitlines()[0]
    assert "[not for tcp]" in out  # the HTTP-only probes say so


def test_request_budget_is_a_hard_cap(capsys: pytest.CaptureFixture[str]) -> None:
    """--max-requests: the server sees at most that many requests; the rest is skipped."""
    recording = Recording()
    with running_asgi(recording.app()) as (port, _):
        status, out, _ = run(capsys, f"http://127.0.0.1:{port}/", "--max-requests", "12", *FAST)
    assert len(recording.bodies) <= 12
    assert "request budget used up (raise --max-requests)" in out
    assert status == 0


def test_budget_paces_requests_at_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = Budget(5, 2.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        budget.take()
    assert now[0] == pytest.approx(2.0)  # 5 requests at 2/s: the 5th leaves at t=2.0
    with pytest.raises(BudgetExhausted):
        budget.take()
    assert budget.used == 5


def test_only_the_given_method_is_ever_called(capsys: pytest.CaptureFixture[str]) -> None:
    """Every parseable message calls --method with --params, or a name that cannot exist."""
    recording = Recording()
    with running_asgi(recording.app()) as (port, _):
        args = ["--method", "add", "--params", "[2, 3]", "--suite", "all"]
        run(capsys, f"http://127.0.0.1:{port}/", *args, *FAST)
    calls = 0
    for body in recording.bodies:
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            continue  # not JSON: no method is called
        for element in message if isinstance(message, list) else [message]:
            method = element.get("method") if isinstance(element, dict) else None
            if method == "add":
                calls += 1
                assert element.get("params") == [2, 3]
            elif isinstance(method, str) and method:  # "": the envelope table's empty name
                assert method.startswith("safe_rpc_audit_nonexistent_"), method
    assert calls >= 4


def _hostile_app() -> Any:
    """Answers everything with an error whose text tries to clear and rewrite the terminal."""
    evil = "\x1b[2J\x1b[1;1HALL CHECKS PASSED\r\nsummary: 0 fail " + "A" * 5000

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        error = {"code": -32601, "message": evil, "data": evil}
        body = json.dumps({"jsonrpc": "2.0", "error": error, "id": None}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def test_hostile_server_cannot_drive_the_terminal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "audit.md"
    with running_asgi(_hostile_app()) as (port, _):
        argv = ["--suite", "conformance", "--report", str(report)]
        status, out, _ = run(capsys, f"http://127.0.0.1:{port}/", *argv, *FAST)
    assert status == 1
    assert "\x1b" not in out
    assert "\r" not in out
    assert all(len(line) <= 300 for line in out.splitlines())
    assert sum(line.startswith("summary:") for line in out.splitlines()) == 1
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# safe-rpc audit of `http://127.0.0.1:")
    assert "\x1b" not in text
    rows = [line for line in text.splitlines() if line.startswith("| `c.")]
    assert len(rows) == 42
    assert all(line.count(" | ") == 3 for line in rows)  # no cell broke out of the table


def test_corpus_option_sends_n_and_y_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "test_parsing"
    folder.mkdir()
    (folder / "n_array_extra_comma.json").write_bytes(b"[1,]")
    (folder / "n_object_single_quote.json").write_bytes(b"{'a':1}")
    (folder / "y_array_one.json").write_bytes(b"[1]")
    (folder / "y_object_duplicated_key.json").write_bytes(b'{"a":"b","a":"c"}')
    with safe_rpc_http() as port:
        status, out, _ = run(
            capsys,
            f"http://127.0.0.1:{port}/",
            "--suite",
            "strict-json",
            "--corpus",
            str(tmp_path),
            *FAST,
        )
    assert status == 0
    assert "pass  s.corpus-n" in out
    assert "2 files, all refused" in out
    assert "pass  s.corpus-y" in out
    assert "2 files, all parsed (1 refused for I-JSON strictness, RFC 7493)" in out


def test_one_source_of_truth_for_the_case_tables() -> None:
    """The tests' tables are the audit's; every strict-JSON probe is one safe_rpc refuses."""
    assert cases.SPEC_EXAMPLES is audit_cases.SPEC_EXAMPLES
    assert cases.ENVELOPES is audit_cases.ENVELOPES
    assert _INSERTS is audit_cases.HOSTILE_FRAGMENTS
    rpc = calculator()
    for probe in audit_cases.STRICT_JSON:
        answer = rpc.dispatch(probe.template.replace(b"@", b"add"))
        assert answer is not None
        assert json.loads(answer)["error"]["code"] == -32700, probe.name
    assert rpc.dispatch(b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}') is not None


def test_tls_context_is_verified_by_default() -> None:
    from safe_rpc._audit.transports import parse_target

    target = parse_target("tls://127.0.0.1:9000")
    assert target.ssl is not None
    assert target.ssl.verify_mode == ssl.CERT_REQUIRED
    assert target.ssl.check_hostname


def test_progress_shows_on_a_terminal_only() -> None:
    """With stderr on a terminal the audit shows its progress there (and clears it); the
    report on stdout is the same as without a terminal."""
    master, slave = pty.openpty()
    with safe_rpc_http() as port:
        argv = [sys.executable, "-m", "safe_rpc", "audit", f"http://127.0.0.1:{port}/"]
        argv += ["--suite", "conformance", *FAST]
        on_tty = subprocess.run(argv, stdout=subprocess.PIPE, stderr=slave, timeout=120)
        piped = subprocess.run(argv, capture_output=True, timeout=120)
    os.close(slave)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's other end is closed
        while chunk := os.read(master, 65536):
            shown += chunk
    os.close(master)
    assert b"\r  conformance: 41/42 checks ..." in shown
    assert piped.stderr == b""
    assert on_tty.returncode == piped.returncode == 0
    assert on_tty.stdout.splitlines()[:-1] == piped.stdout.splitlines()[:-1]  # timings differ


def test_a_refused_token_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A token the server refuses: exit 2 saying so (not 40 failures); a good one works."""
    keyring = make_keyring()
    rpc = calculator(keyring=keyring)
    token_file = tmp_path / "token"
    token_file.write_text(keyring.issue("alice", [], ttl=600) + "\n")
    with running_asgi(ASGIApp(rpc), **config_options(rpc.limits)) as (port, _):
        url = f"http://127.0.0.1:{port}/"
        refused, _, err = run(capsys, url, "--suite", "conformance", "--token", "x.y.z", *FAST)
        args = ["--suite", "conformance", "--token-file", str(token_file)]
        status, out, _ = run(capsys, url, *args, *FAST)
    assert refused == 2
    assert "the server wants a credential" in err
    assert "HTTP 401" in err
    assert status == 0, out


def test_expect_is_checked_against_the_result(capsys: pytest.CaptureFixture[str]) -> None:
    with safe_rpc_http() as port:
        args = ["--method", "add", "--params", '{"a": 2, "b": 3}', "--expect", "6"]
        status, out, _ = run(
            capsys, f"http://127.0.0.1:{port}/", "--suite", "conformance", *args, *FAST
        )
    assert status == 1
    assert "FAIL  c.spec.named-parameters " in out
    assert "result '5', expected '6'" in out


def test_audit_of_the_calculator_example_served_by_the_cli(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``safe-rpc serve examples.calculator:rpc`` with its defaults, over HTTP and TCP:
    every message-level check passes (the connection probes wait for the default
    deadlines, 10 to 120 s, so they run in tests/test_audit.py with short ones)."""
    with serve("examples.calculator:rpc", "--tcp", "127.0.0.1:0", cwd=REPO_ROOT) as server:
        for url in (server.url, f"tcp://127.0.0.1:{server.tcp_port}"):
            argv = [
                "--method",
                "add",
                "--params",
                "[2, 3]",
                "--expect",
                "5",
                "--probe-invalid-params",
            ]
            argv += ["--skip", "l.slow", "--skip", "l.idle", "--skip", "l.oversized-body"]
            status, out, _ = run(capsys, url, *argv, "--json", *FAST)
            checks = json.loads(out)["checks"]
            assert status == 0
            assert {c["verdict"] for c in checks} == {"pass", "skip"}
            assert all(c["verdict"] == "pass" or c["id"].startswith("l.") for c in checks)
