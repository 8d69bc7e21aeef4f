"""``safe-rpc serve`` as an operator runs it: startup errors, keys, TLS, workers (issue 4)."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme
from servers import APPS, cli, http_request, one_line_error, read_response, serve

from safe_rpc import Keyring

ADD = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "no_colon"], "is not MODULE:ATTR"),
        (["serve", "no_such_module:rpc"], "cannot import"),
        (["serve", "http_app:missing"], "is not an RPCServer"),
        (["serve", "http_app:LIMITS"], "is not an RPCServer"),
        (["serve", "http_app:public_rpc", "--http", "0.0.0.0:0"], "without a keyring"),
        (["serve", "http_app:public_rpc", "--http", "localhost:notaport"], "HOST:PORT"),
        (["serve", "http_app:rpc", "--keys", "/nonexistent/keys.json"], "cannot read key file"),
        (["serve", "http_app:rpc", "--ssl-certfile", "cert.pem"], "go together"),
    ],
)
def test_startup_errors_are_one_line(args: list[str], message: str) -> None:
    """Every startup mistake is one clear line on stderr and exit status 2, no traceback."""
    one_line_error(cli(*args), message)


def test_sr41_public_bind_with_keys_starts(tmp_path: Path) -> None:
    """With a key file the server starts (on loopback here) and says auth is on."""
    keys = tmp_path / "keys.json"
    Keyring.generate(audience="tests").to_file(keys)
    with serve("http_app:public_rpc", "--keys", str(keys)) as running:
        assert "auth on" in running.output[-1]
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
            sock.sendall(http_request(ADD))
            assert read_response(sock)[0] == 200


def test_tls_serving(tmp_path: Path) -> None:
    """--ssl-certfile/--ssl-keyfile serve HTTPS that a verifying client accepts."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with serve(
        "http_app:rpc", "--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file)
    ) as running:
        assert "https://" in running.output[-1]
        with (
            socket.create_connection(("127.0.0.1", running.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(http_request(ADD))
            status, _, body = read_response(sock)
        assert status == 200
        assert json.loads(body)["result"] == 5


def test_workers_serve_calls(tmp_path: Path) -> None:
    """--workers 2 runs worker processes that answer calls (on a shared store)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "safe_rpc",
            "serve",
            "http_app:rpc",
            "--http",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--store",
            f"sqlite:///{tmp_path}/state.db",
        ],
        cwd=APPS,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    sock.sendall(http_request(ADD))
                    status, _, body = read_response(sock)
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("workers did not start")
        assert status == 200
        assert json.loads(body)["result"] == 5
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert re.search(r"2 workers on http://127\.0\.0\.1:\d+/ auth on", output)
