"""Every example runs as its docstring says, so none can rot (issue 8)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from servers import REPO_ROOT, exchange, http_request, serve, started

from safe_rpc import Client, Keyring


def test_calculator_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    """examples.calculator answers the spec's subtract example and refuses "2" for an int."""
    from examples import calculator

    calculator.main()
    out = capsys.readouterr().out
    assert '"result":5' in out
    assert '"result":19' in out
    assert "-32602" in out


def _bank_keys(tmp_path: Path) -> tuple[Keyring, Path]:
    keys = tmp_path / "bank-keys.json"
    ring = Keyring.generate(audience="bank")
    ring.to_file(keys)
    return ring, keys


def test_bank_over_http(tmp_path: Path) -> None:
    """examples.bank served with a key file: scopes, typed application errors, statements."""
    from examples.bank import InsufficientFunds, Statement

    ring, keys = _bank_keys(tmp_path)
    token = ring.issue("alice", ["account:read", "account:write"])
    with serve("examples.bank:rpc", "--keys", str(keys), cwd=REPO_ROOT) as server:
        with Client(server.url, token=token) as c:
            assert c.bank.rates()["savings"] == 0.02
            assert c.account.deposit(amount=10) == 10
            with pytest.raises(InsufficientFunds) as info:
                c.account.withdraw(amount=50)
            assert info.value.data.balance == 10
            assert Statement.model_validate(c.account.statement()).balance == 10
        read_only = ring.issue("bob", ["account:read"])
        with Client(server.url, token=read_only) as c:
            assert c.account.balance() == 0  # bob's own account
            from safe_rpc import MethodNotFound

            with pytest.raises(MethodNotFound):
                c.account.deposit(amount=1)


def test_bank_in_process_validation() -> None:
    """Field constraints on handler parameters hold (amount must be positive)."""
    from examples.bank import rpc

    ring = Keyring.generate(audience="bank")
    rpc.keyring = ring
    token = ring.issue("carol", ["account:write"])
    message = b'{"jsonrpc":"2.0","method":"account.deposit","params":[-5],"id":1}'
    try:
        raw = rpc.dispatch(message, token=token)
    finally:
        rpc.keyring = None
    assert raw is not None
    error = json.loads(raw)["error"]
    assert error["code"] == -32602
    assert error["data"][0]["loc"] == ["amount"]


def test_quickstart_prints_a_working_token_and_command() -> None:
    """`python -m examples.quickstart` prints a token and a curl line that works."""
    command = [sys.executable, "-m", "examples.quickstart", "127.0.0.1:0"]
    with started(command, expect={"http"}, cwd=REPO_ROOT) as server:
        text = "\n".join(server.output)
        token = re.search(r"token \(valid 1 hour\): (\S+)", text)
        assert token is not None
        assert "curl -s http://127.0.0.1:" in text
        body = json.dumps(
            {"jsonrpc": "2.0", "method": "notes.add", "params": {"text": "hi"}, "id": 1}
        )
        status, _, answer = exchange(
            server.port,
            http_request(body.encode(), headers={"Authorization": f"Bearer {token[1]}"}),
        )
        assert status == 200
        assert json.loads(answer)["result"] == 1


def test_tcp_tls_service_and_client(tmp_path: Path) -> None:
    """The TLS sensor service and its client script work together as documented."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ring = Keyring.generate(audience="sensors")
    ring.to_file(tmp_path / "keys.json")
    command = [
        sys.executable, "-m", "examples.tcp_tls_service", "--keys", str(tmp_path / "keys.json"),
        "--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "key.pem"),
        "--tcp", "127.0.0.1:0",
    ]  # fmt: skip
    with started(command, expect={"tcp"}, cwd=REPO_ROOT) as server:
        assert any("tls://" in line for line in server.output)
        token = ring.issue("dev1", ["sensors:write"])
        client = subprocess.run(
            [sys.executable, "-m", "examples.tcp_client", f"tls://localhost:{server.tcp_port}",
             "--token", token, "--ca", str(tmp_path / "ca.pem")],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert client.returncode == 0, client.stderr
        assert "latest: {'sensor': 'kitchen', 'celsius': 21.5}" in client.stdout


def test_typed_bank_generates_stubs_and_uses_them(tmp_path: Path) -> None:
    """examples.typed_bank: stubs generated from the live bank, then typed calls."""
    ring, keys = _bank_keys(tmp_path)
    token = ring.issue("alice", ["account:read", "account:write"])
    with serve("examples.bank:rpc", "--keys", str(keys), cwd=REPO_ROOT) as server:
        done = subprocess.run(
            [sys.executable, "-m", "examples.typed_bank", server.url, "--token", token],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "balance after deposit: 100",
        "refused: InsufficientFunds balance 100",
        "statement: Statement as of datetime",
        "last entry: UUID datetime 100",
        "same entry by id: True",
    ]


def test_prices_service_and_client() -> None:
    """The streaming price service and its client script work together as documented."""
    command = [sys.executable, "-m", "examples.prices", "127.0.0.1:0"]
    with started(command, expect={"http"}, cwd=REPO_ROOT) as server:
        token = re.search(r"token \(valid 1 hour\): (\S+)", "\n".join(server.output))
        assert token is not None
        client = subprocess.run(
            [sys.executable, "-m", "examples.prices_client", f"ws://127.0.0.1:{server.port}/",
             "--token", token[1], "--count", "3"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert client.returncode == 0, client.stderr
        lines = client.stdout.splitlines()
        assert [line.split()[0] for line in lines[:3]] == ["EURUSD"] * 3
        assert re.fullmatch(r"trade \d+: dev USDJPY x3", lines[3])
