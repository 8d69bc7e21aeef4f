"""Real fleets: `safe-rpc serve` processes sharing one Redis, `--workers 2` sharing one SQLite
file, `safe-rpc revoke` from the command line, and Redis killed under load."""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from redis_support import RedisServer
from servers import APPS, connect, exchange, http_request, read_response, serve

from safe_rpc import Keyring
from safe_rpc._cli.main import main

REFUSE_WITHIN = 1.0 + 0.5  # Limits.revocation_staleness, plus slack for a loaded machine


def make_keys(tmp_path: Path) -> tuple[Keyring, str]:
    ring = Keyring.generate(audience="fleet")
    path = tmp_path / "keys.json"
    ring.to_file(path)
    return ring, str(path)


def call(port: int, method: str, token: str | None = None) -> tuple[Any, Any]:
    """(result, error code) of one call over a fresh HTTP connection."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1}).encode()
    _, _, raw = exchange(port, http_request(body, headers=headers))
    data = json.loads(raw)
    return data.get("result"), data.get("error", {}).get("code")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safe_rpc", *args],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def revoke_jti(ring: Keyring, store: str, token: str) -> None:
    principal = ring.verify(token)
    # --jti=ID: a random id can start with "-", which argparse would take for an option.
    done = cli("revoke", "--store", store, f"--jti={principal.token_id or ''}",
               "--until", str(int(principal.expires_at or 0)))  # fmt: skip
    assert done.returncode == 0, done.stderr


def until_refused(ports: list[int], token: str, method: str = "whoami") -> dict[int, float]:
    """Seconds after which each port first answered -32001 for ``token``."""
    started, refused = time.monotonic(), dict[int, float]()
    while len(refused) < len(ports) and time.monotonic() - started < 10:
        for port in ports:
            if port not in refused and call(port, method, token)[1] == -32001:
                refused[port] = time.monotonic() - started
    return refused


def failed_authentications(ports: list[int]) -> list[int]:
    statuses = []
    body = json.dumps({"jsonrpc": "2.0", "method": "whoami", "id": 1}).encode()
    for i in range(14):
        request = http_request(body, headers={"Authorization": "Bearer bad.token.here"})
        statuses.append(exchange(ports[i % 2], request)[0])
        time.sleep(0.05)  # each process hears the store's count back off the request path
    return statuses


def test_two_serve_processes_on_one_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    """Revoke via the CLI: both refuse within 1 s; a 10/minute quota is 10 across both; a
    restarted server still refuses what was revoked."""
    ring, keys = make_keys(tmp_path)
    store = f"{redis_server.url}?prefix=fleet{secrets.token_hex(3)}:"
    victim, subject, other = (ring.issue(name, ["w"]) for name in ("v", "s", "o"))
    options = ("--keys", keys, "--store", store)
    with serve("store_app:rpc", *options) as one, serve("store_app:rpc", *options) as two:
        ports = [one.port, two.port]
        assert all(call(port, "whoami", victim)[1] is None for port in ports)
        revoke_jti(ring, store, victim)
        jti_times = until_refused(ports, victim)
        assert cli("revoke", "--store", store, "--subject", "s").returncode == 0
        sub_times = until_refused(ports, subject)
        codes = [call(port, "limited", other)[1] for port in ports * 6]
        listed = cli("revocations", "--store", store)
        statuses = failed_authentications(ports)
        assert call(one.port, "ping")[1] is None  # public calls are not affected
    print(f"refused after jti revoke: {jti_times}, subject revoke: {sub_times}")
    assert len(jti_times) == len(sub_times) == 2
    assert max(*jti_times.values(), *sub_times.values()) < REFUSE_WITHIN
    assert codes.count(None) == 10
    assert codes[10:] == [-32004, -32004]
    assert "subject  's' issued before" in listed.stdout
    # SR-40 fleet-wide: 10 failed authentications a minute per address, spread over both
    # processes (each may let one more through before it hears the store's count).
    print(f"statuses: {statuses}")
    # The revoked-token probes above were failures too, and the budget refills one per 6 s
    # (GCRA), so where the 429s start varies. Counted per process instead, 7 failures each
    # would all be 401.
    assert statuses[0] == 401
    assert statuses.count(401) <= 10 + 2
    assert statuses[-4:] == [429] * 4
    with serve("store_app:rpc", *options) as restarted:
        assert call(restarted.port, "whoami", victim)[1] == -32001
        assert call(restarted.port, "whoami", subject)[1] == -32001
        assert call(restarted.port, "whoami", ring.issue("s", ["w"]))[1] is None  # new token


def probe_workers(port: int, token: str) -> dict[int, int]:
    """pid -> 1/0 (accepts ``token``) from concurrent connections, until both workers
    answered or 200 probes went out (the kernel picks the worker of each connection)."""
    seen: dict[int, int] = {}
    body = json.dumps({"jsonrpc": "2.0", "method": "check", "params": [token], "id": 1})
    for _ in range(25):
        socks = [connect(port) for _ in range(8)]
        for sock in socks:
            sock.sendall(http_request(body.encode()))
        for sock in socks:
            with sock:
                answer = json.loads(read_response(sock)[2])
                assert "result" in answer, answer
                pid, accepted = answer["result"]
                seen[pid] = accepted
        if len(seen) == 2:
            break
    return seen


def status_of(port: int, token: str) -> int:
    body = json.dumps({"jsonrpc": "2.0", "method": "whoami", "id": 1}).encode()
    request = http_request(body, headers={"Authorization": f"Bearer {token}"})
    return exchange(port, request)[0]


@contextmanager
def workers(tmp_path: Path, *args: str) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "safe_rpc", "serve", "store_app:rpc", "--http",
               f"127.0.0.1:{port}", "--workers", "2", *args]  # fmt: skip
    log = (tmp_path / "workers.log").open("w")  # read it when a test here fails
    process = subprocess.Popen(command, cwd=APPS, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                call(port, "ping")
                break
            except OSError:
                assert process.poll() is None, "workers exited"
                assert time.monotonic() < deadline, "workers did not start"
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def test_workers_on_one_sqlite_file(tmp_path: Path) -> None:
    """--workers 2 on SQLite: revocation seen by both within 1 s, one quota for both, and
    the revocation survives a restart."""
    ring, keys = make_keys(tmp_path)
    store = f"sqlite:///{tmp_path}/state.db"
    victim, other = ring.issue("v", ["w"]), ring.issue("o", ["w"])
    with workers(tmp_path, "--keys", keys, "--store", store) as port:
        before = probe_workers(port, victim)
        revoke_jti(ring, store, victim)
        revoked_at = time.monotonic()
        took = until_refused([port], victim)
        time.sleep(max(0.0, revoked_at + REFUSE_WITHIN - time.monotonic()))
        after = probe_workers(port, victim)
        codes = [call(port, "limited", other)[1] for _ in range(12)]
    print(f"workers before: {before}, after: {after}; refused after {took}")
    seen = (before, after, took, codes, (tmp_path / "workers.log").read_text()[-3000:])
    assert took.get(port, 99.0) < REFUSE_WITHIN, seen
    assert set(before.values()) == {1}, seen
    assert set(after.values()) == {0}, seen  # every worker that answered refuses it
    assert len(before) == 2 or len(after) == 2, seen  # the probe reached both workers
    assert codes.count(None) == 10, seen
    assert codes[10:] == [-32004, -32004], seen
    with serve("store_app:rpc", "--keys", keys, "--store", store) as restarted:
        assert call(restarted.port, "whoami", victim)[1] == -32001


def main_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """``safe-rpc ARGS`` in this process, from tests/apps: (exit status, stdout, stderr)."""
    monkeypatch.chdir(APPS)
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_workers_without_a_shared_store_are_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = main_in_process(
        capsys, monkeypatch, "serve", "store_app:rpc", "--workers", "2"
    )
    assert status == 2
    assert err.count("\n") == 1
    assert "--store sqlite:///PATH" in err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:1/0", "not reachable"),
        ("redis://127.0.0.1:6379/x", "malformed Redis URL"),
        ("sqlite:///nonexistent-dir/x.db", "cannot open"),
        ("postgres://db/", "unknown store"),
    ],
)
def test_unusable_store_at_startup_is_one_line_and_exit_2(
    url: str, expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = main_in_process(capsys, monkeypatch, "serve", "store_app:rpc", "--store", url)
    assert status == 2
    assert err.count("\n") == 1
    assert expected in err


def test_wrong_redis_password_at_startup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = RedisServer(tmp_path, password="right")
    locked.start()
    try:
        url = locked.url.replace("right", "wrong")
        status, _, err = main_in_process(
            capsys, monkeypatch, "serve", "store_app:rpc", "--store", url
        )
    finally:
        locked.stop()
    assert status == 2
    assert "refused the password" in err
    assert "wrong" not in err


def test_cli_revoke_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:///{tmp_path}/s.db"
    for args, message in [
        (["--jti", "abc"], "--until"),
        (["--kid", "k1", "--until", "5"], "--until goes with --jti"),
        (["--subject", "a b"], "printable"),
        (["--subject", "a", "--before", "yesterday"], "ISO 8601"),
        (["--kid", "k"], "memory store lives inside"),
    ]:
        url = "memory" if "memory" in message else store
        status, _, err = main_in_process(capsys, monkeypatch, "revoke", "--store", url, *args)
        assert status == 2
        assert message in err
    status, out, _ = main_in_process(capsys, monkeypatch, "revoke", "--store", store, "--kid", "k1")
    assert status == 0
    assert "revoked kid k1" in out
    status, out, _ = main_in_process(capsys, monkeypatch, "revocations", "--store", store, "--json")
    assert status == 0
    assert json.loads(out)["kids"] == ["k1"]


def test_redis_killed_under_load_and_restarted(tmp_path: Path) -> None:
    """Public calls never fail; quota'd calls fail closed (-32009) at once; private calls
    keep working on cached revocations for revocation_max_stale (2 s here), then -32009;
    all recover after the restart; the server logs one line per state change."""
    lone = RedisServer(tmp_path)
    lone.start()
    ring, keys = make_keys(tmp_path)
    token, revoked = ring.issue("alice", ["w"]), ring.issue("mallory", ["w"])
    log: list[tuple[float, str, Any]] = []
    stop = threading.Event()
    with serve("store_app:rpc", "--keys", keys, "--store", lone.url) as server:
        revoke_jti(ring, lone.url, revoked)
        assert until_refused([server.port], revoked)

        def load() -> None:
            try:
                run_load()
            except BaseException as exc:
                log.append((time.monotonic(), f"crash {exc!r}", None))

        def run_load() -> None:
            counter = 0
            while not stop.is_set():
                counter += 1
                quota_token = ring.issue(f"u{counter}", ["w"])  # a fresh budget per call
                # (The revoked token is probed only now and then: every probe is a failed
                # authentication, and 10 a minute from one address are answered 429.)
                probe = counter % 40 == 0
                calls = [("ping", None), ("whoami", token), ("limited", quota_token)]
                for method, tok in calls + ([("whoami", revoked)] if probe else []):
                    started = time.monotonic()
                    code = call(server.port, method, tok)[1]
                    log.append((started, f"{method}{'-revoked' if tok == revoked else ''}", code))
                    log.append((time.monotonic() - started, "latency", None))
                time.sleep(0.03)

        worker = threading.Thread(target=load)
        worker.start()
        try:
            time.sleep(0.5)
            killed = time.monotonic()
            lone.stop()
            time.sleep(3.5)
            restarted = time.monotonic()
            lone.start()
            time.sleep(2.0)
        finally:
            stop.set()
            worker.join(30)
        code = server.stop()
    lone.stop()
    assert code == 0
    report = summarise(log, killed, restarted)
    print("fault timings:", report)
    assert report["public_failures"] == 0
    assert report["revoked_accepted"] == 0
    assert report["revoked_probes_in_outage"] >= 1
    assert report["max_latency"] < 0.3 + 1.0  # store_timeout, plus a loaded machine
    assert report["quota_closed_after"] < 1.0
    assert 1.5 < report["private_busy_after"] < 3.5  # revocation_max_stale = 2 s
    assert report["recovered_after"] < 2.0
    text = "\n".join(server.output)
    assert len(re.findall(r"is unreachable", text)) == 1, text
    assert len(re.findall(r"reachable again", text)) == 1, text
    assert "Traceback" not in text


def summarise(log: list[tuple[float, str, Any]], killed: float, restarted: float) -> dict[str, Any]:
    calls = [(t, name, code) for t, name, code in log if name != "latency"]

    def first(name: str, code: int, after: float) -> float:
        times = [t for t, n, c in calls if n == name and c == code and t >= after]
        return min(times) - after if times else float("inf")

    ok_after = [t for t, n, c in calls if n == "whoami" and c is None and t >= restarted]
    quota_ok = [t for t, n, c in calls if n == "limited" and c is None and t >= restarted]
    return {
        "calls": len(calls),
        "public_failures": sum(1 for _, n, c in calls if n == "ping" and c is not None),
        "revoked_accepted": sum(1 for _, n, c in calls if n == "whoami-revoked" and c is None),
        "revoked_probes_in_outage": sum(
            1 for t, n, _ in calls if n == "whoami-revoked" and killed <= t < restarted
        ),
        "max_latency": round(max(t for t, n, _ in log if n == "latency"), 3),
        "quota_closed_after": round(first("limited", -32009, killed), 3),
        "private_busy_after": round(first("whoami", -32009, killed), 3),
        "recovered_after": round(
            max(min(ok_after, default=float("inf")), min(quota_ok, default=float("inf")))
            - restarted,
            3,
        ),
    }
