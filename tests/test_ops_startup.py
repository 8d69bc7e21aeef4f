"""Startup mistakes are one line and exit 2; options come from flags or SAFE_RPC_*."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "apps"))
import ops_app
from servers import APPS, cli, exchange, http_request, one_line_error, serve, started

from safe_rpc import AsyncClient, Client, Keyring, TransportError

ADD = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_http_port_in_use_is_one_line(busy_port: int) -> None:
    result = cli("serve", "ops_app:rpc", "--http", f"127.0.0.1:{busy_port}")
    one_line_error(result, f"cannot listen for HTTP on 127.0.0.1:{busy_port}")


def test_tcp_port_in_use_is_one_line(busy_port: int) -> None:
    result = cli("serve", "ops_app:rpc", "--http", "127.0.0.1:0", "--tcp", f"127.0.0.1:{busy_port}")
    one_line_error(result, f"cannot listen for TCP on 127.0.0.1:{busy_port}")


def test_http_port_in_use_with_workers_is_one_line(busy_port: int, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/state.db"  # workers need a shared store
    result = cli(
        "serve", "ops_app:rpc", "--http", f"127.0.0.1:{busy_port}", "--workers", "2",
        "--store", store,
    )  # fmt: skip
    one_line_error(result, f"cannot listen for HTTP on 127.0.0.1:{busy_port}")


def test_metrics_port_in_use_is_one_line(busy_port: int) -> None:
    result = cli(
        "serve", "ops_app:rpc", "--http", "127.0.0.1:0", "--metrics", f"127.0.0.1:{busy_port}"
    )
    one_line_error(result, f"cannot listen for metrics on 127.0.0.1:{busy_port}")


def test_missing_certificate_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "cert.pem"
    key = tmp_path / "key.pem"
    key.write_text("x")
    result = cli("serve", "ops_app:rpc", "--ssl-certfile", str(missing), "--ssl-keyfile", str(key))
    one_line_error(result, f"cannot read the TLS certificate file {missing}")


def test_unreadable_key_file_names_the_file(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    result = cli(
        "serve", "ops_app:rpc", "--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path)
    )
    one_line_error(result, f"cannot read the TLS key file {tmp_path}")


def test_certificate_that_is_not_pem_is_one_line(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    result = cli("serve", "ops_app:rpc", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    one_line_error(result, "cannot load TLS certificate", str(cert))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workers", "0"], "--workers must be 1 or more (got 0)"),
        (["--workers", "-3"], "--workers must be 1 or more (got -3)"),
        (["--workers", "two"], "--workers must be a number"),
        (["--grace", "-1"], "--grace must be 0 or more seconds (got -1.0)"),
        (["--grace", "nan"], "--grace must be a finite number"),
        (["--access-log", "xml"], "--access-log must be json, text or off"),
        (["--ready-path", "readyz"], "--ready-path must start with /"),
        (["--trusted-proxy", "not-an-ip"], "does not appear to be an IPv4 or IPv6 address"),
        (["--cors-origin", "*"], "cors_origins cannot be '*'"),
    ],
)
def test_nonsensical_values_are_refused(args: list[str], needle: str) -> None:
    one_line_error(cli("serve", "ops_app:rpc", *args), needle)


@pytest.mark.parametrize("flag", [["--tcp", "127.0.0.1:0"], ["--metrics", "127.0.0.1:0"]])
def test_workers_with_tcp_is_refused_not_silently_dropped(flag: list[str]) -> None:
    """--workers 2 --tcp used to serve no TCP at all. Now it says so and stops
    (likewise metrics, which would each count one worker only)."""
    result = cli("serve", "ops_app:rpc", "--workers", "2", *flag)
    one_line_error(result, f"{flag[0]} needs a single process")


def test_lifespan_failure_is_one_line_and_exit_2() -> None:
    result = cli("serve", "ops_app:rpc", "--http", "127.0.0.1:0", env={"OPS_APP_LIFESPAN": "fail"})
    one_line_error(result, "lifespan failed at startup: ConnectionRefusedError")


def test_lifespan_runs_around_serving_and_reaches_handlers() -> None:
    with serve("ops_app:rpc") as server:
        with Client(server.url) as client:
            assert client.pool() == "pool-1"
        assert "ops_app: lifespan entered" in server.output
        assert server.stop() == 0
    assert "ops_app: lifespan left" in server.output


def test_key_file_from_the_environment_turns_auth_on(tmp_path: Path) -> None:
    """SAFE_RPC_KEY_FILE=keys.json safe-rpc serve used to start with auth off."""
    keys = tmp_path / "keys.json"
    keyring = Keyring.generate(audience="ops")
    keyring.to_file(keys)
    command = [sys.executable, "-m", "safe_rpc", "serve", "ops_app:keyed", "--http", "127.0.0.1:0"]
    os.environ["SAFE_RPC_KEY_FILE"] = str(keys)
    try:
        with started(command, expect={"http"}) as server:
            assert "auth on" in server.output[-1]
            with Client(server.url, token=keyring.issue("env-user", ["ops"])) as client:
                assert client.whoami() == "env-user"
    finally:
        del os.environ["SAFE_RPC_KEY_FILE"]


def test_flag_wins_over_the_environment() -> None:
    command = [sys.executable, "-m", "safe_rpc", "serve", "ops_app:rpc", "--http", "127.0.0.1:0"]
    os.environ["SAFE_RPC_HTTP"] = "127.0.0.1:1"  # would fail to bind (privileged, or in use)
    os.environ["SAFE_RPC_ALLOW_HOSTS"] = "svc.internal, other.internal"
    try:
        with started(command, expect={"http"}) as server:
            status, _, _ = exchange(server.port, http_request(ADD, host="svc.internal"))
            assert status == 200  # the list from the environment applies
            status, _, _ = exchange(server.port, http_request(ADD, host="evil.example"))
            assert status == 403
    finally:
        del os.environ["SAFE_RPC_HTTP"], os.environ["SAFE_RPC_ALLOW_HOSTS"]


def test_environment_value_errors_name_the_variable() -> None:
    result = cli("serve", "ops_app:rpc", env={"SAFE_RPC_WORKERS": "many"})
    one_line_error(result, "SAFE_RPC_WORKERS must be a number")


def test_every_option_is_a_flag_an_env_var_and_a_serve_parameter() -> None:
    import inspect

    from safe_rpc import serve as serve_function
    from safe_rpc._cli.serve import OPTIONS

    parameters = set(inspect.signature(serve_function).parameters)
    readme = (APPS.parent.parent / "README.md").read_text(encoding="utf-8")
    cli_only = {"workers"}  # serve() runs one process
    renamed = {"allow_host": "allowed_hosts", "allow_origin": "allowed_origins",
               "cors_origin": "cors_origins", "trusted_proxy": "trusted_proxies",
               "no_websocket": "websocket"}  # fmt: skip
    for flag, env, *_ in OPTIONS:
        key = flag[2:].replace("-", "_")
        assert f"`{flag}`" in readme
        assert f"`{env}`" in readme
        assert key in cli_only or renamed.get(key, key) in parameters, flag


def test_serve_access_log_and_metrics_flags_over_real_sockets() -> None:
    """--access-log json writes one JSON line per call; --metrics serves on its own port."""
    import json
    import re
    import urllib.request

    flags = ("--access-log", "json", "--metrics", "127.0.0.1:0", "--otel")
    with serve("ops_app:rpc", *flags) as server:
        found = [
            re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", x) for x in server.output
        ]
        [port] = [int(m[1]) for m in found if m]
        with Client(server.url) as client:
            assert client.add(2, 3) == 5
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert 'safe_rpc_calls_total{code="ok",method="add",transport="http"} 1.0' in text
        server.stop()
    lines = [json.loads(x) for x in server.output if x.startswith('{"method"')]
    assert [(x["method"], x["code"], x["transport"]) for x in lines] == [("add", None, "http")]


def test_tcp_auth_failures_and_calls_reach_the_metrics() -> None:
    import asyncio

    from safe_rpc import TCPServer, Unauthenticated
    from safe_rpc._ops.metrics import PrometheusMetrics

    rpc = ops_app.keyed
    metrics = PrometheusMetrics(rpc)

    async def scenario() -> None:
        server = TCPServer(rpc)
        _, port = await server.start("127.0.0.1", 0)
        try:
            with pytest.raises(Unauthenticated):
                async with AsyncClient(
                    f"tcp://127.0.0.1:{port}", token="not-a-token", timeout=5
                ) as client:
                    await client.add(1, 2)
            token = ops_app.keyring.issue("t", ["ops"])
            async with AsyncClient(f"tcp://127.0.0.1:{port}", token=token, timeout=5) as client:
                assert await client.whoami() == "t"
        finally:
            await server.close(1.0)

    asyncio.run(scenario())
    value = metrics.registry.get_sample_value
    assert value("safe_rpc_auth_failures_total", {"transport": "tcp"}) == 1
    assert (
        value("safe_rpc_calls_total", {"method": "whoami", "code": "ok", "transport": "tcp"}) == 1
    )


def test_lifespan_failure_under_workers_exits_2(tmp_path: Path) -> None:
    """Each worker logs why; the supervisor's clean-looking return becomes exit status 2."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli(
        "serve", "ops_app:rpc", "--http", f"127.0.0.1:{port}", "--workers", "2",
        "--store", f"sqlite:///{tmp_path}/state.db",
        env={"OPS_APP_LIFESPAN": "fail"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "lifespan failed at startup: ConnectionRefusedError" in result.stderr
    assert result.stderr.rstrip().endswith("a worker failed to start; the reason is logged above")
    assert "Traceback" not in result.stderr


def test_sr40_trusted_proxy_flag_gives_each_client_its_own_failure_budget() -> None:
    """behind a proxy, CLI users shared one failed-auth budget (no way to pass
    trusted_proxies). --trusted-proxy makes X-Forwarded-For count, from that peer only."""

    def bad_token(port: int, client: str) -> int:
        headers = {"Authorization": "Bearer bad", "X-Forwarded-For": client}
        return exchange(port, http_request(ADD, headers=headers))[0]

    with serve("ops_app:keyed", "--trusted-proxy", "127.0.0.1") as server:
        statuses = [bad_token(server.port, "203.0.113.7") for _ in range(12)]
        assert statuses[0] == 401
        assert statuses[-1] == 429  # that client is over its budget...
        assert bad_token(server.port, "203.0.113.8") == 401  # ...another is not
        assert exchange(server.port, http_request(ADD))[0] == 200


def test_workers_each_run_the_lifespan_access_log_and_tracing(tmp_path: Path) -> None:
    """Options reach every worker: lifespan state, --access-log, --otel (spans per process)."""
    import json
    import subprocess
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "safe_rpc", "serve", "ops_app:rpc", "--http",
               f"127.0.0.1:{port}", "--workers", "2", "--access-log", "json", "--otel",
               "--store", f"sqlite:///{tmp_path}/state.db"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=APPS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: list[str] = []  # read as it comes: the second worker may start after the first
    stdout = process.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: seen.extend(iter(stdout.readline, "")))
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with Client(f"http://127.0.0.1:{port}/", timeout=2) as client:
                    assert client.pool() == "pool-1"
                break
            except TransportError:
                assert time.monotonic() < deadline, "workers did not start"
                time.sleep(0.2)
        while "".join(seen).count("ops_app: lifespan entered") < 2:
            assert time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(30)
        stdout.close()
    output = "".join(seen)
    assert output.count("ops_app: lifespan entered") == 2
    assert output.count("ops_app: lifespan left") == 2
    lines = [json.loads(x) for x in output.splitlines() if x.startswith('{"method"')]
    assert ("pool", None) in [(x["method"], x["code"]) for x in lines]


def test_settings_read_each_kind_from_the_environment_and_flags_win() -> None:
    """The table's four kinds (text, number, list, switch), as plain function calls."""
    from safe_rpc._cli import CLIError
    from safe_rpc._cli.main import build_parser
    from safe_rpc._cli.serve import settings

    parser = build_parser()
    env = {
        "SAFE_RPC_WORKERS": "3",
        "SAFE_RPC_GRACE": "2.5",
        "SAFE_RPC_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2",
        "SAFE_RPC_OTEL": "yes",
        "SAFE_RPC_READY_PATH": "",  # empty: as if unset
        "SAFE_RPC_HEALTH_PATH": "/live",
    }
    from_env = settings(parser.parse_args(["serve", "m:a"]), env)
    assert (from_env["workers"], from_env["grace"], from_env["otel"]) == (3, 2.5, True)
    assert from_env["trusted_proxy"] == ["10.0.0.1", "10.0.0.2"]
    assert (from_env["health_path"], from_env["ready_path"]) == ("/live", "/readyz")
    args = ["serve", "m:a", "--workers", "1", "--trusted-proxy", "10.9.9.9", "--ready-path", ""]
    flagged = settings(parser.parse_args(args), env)
    assert (flagged["workers"], flagged["trusted_proxy"]) == (1, ["10.9.9.9"])
    assert flagged["ready_path"] is None  # '' on the command line turns the probe off
    with pytest.raises(CLIError, match="SAFE_RPC_OTEL must be 1/true/yes or 0/false/no"):
        settings(parser.parse_args(["serve", "m:a"]), {"SAFE_RPC_OTEL": "maybe"})
