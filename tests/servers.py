"""Start real ``safe-rpc serve`` processes on 127.0.0.1 for tests, and talk raw HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

APPS = Path(__file__).parent / "apps"
REPO_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on (\w+)://[^:]+:(\d+)/")


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    output: list[str]
    tcp_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.process.stdout is not None
        if self.process.stdout.closed:  # stopped already (a test that reads the output)
            return self.process.wait()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(5)
        assert self.process.stdout is not None
        if not self.process.stdout.closed:  # a test may stop the server before the fixture
            self.output.extend(self.process.stdout.read().splitlines())
            self.process.stdout.close()
        return code


@contextmanager
def serve(
    target: str, *args: str, ready_timeout: float = 20.0, cwd: Path = APPS
) -> Iterator[Server]:
    """Run ``safe-rpc serve TARGET --http 127.0.0.1:0 ARGS`` (from tests/apps) until exit."""
    command = [sys.executable, "-m", "safe_rpc", "serve", target, "--http", "127.0.0.1:0", *args]
    expect = {"http", "tcp"} if "--tcp" in args else {"http"}
    with started(command, expect=expect, ready_timeout=ready_timeout, cwd=cwd) as server:
        yield server


@contextmanager
def started(
    command: list[str], *, expect: set[str], ready_timeout: float = 20.0, cwd: Path = APPS
) -> Iterator[Server]:
    """Run a command until it printed a "listening on" line for each of ``expect``
    (``"http"``, ``"tcp"``); stop it when the block ends."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    output: list[str] = []
    deadline = time.monotonic() + ready_timeout
    ports: dict[str, int] = {}
    assert process.stdout is not None
    while not expect <= ports.keys():
        line = process.stdout.readline()
        if not line:
            process.wait(5)
            raise AssertionError("server did not start:\n" + "\n".join(output))
        output.append(line.rstrip())
        for scheme, port in _LISTENING.findall(line):
            ports["tcp" if scheme in ("tcp", "tls") else "http"] = int(port)
        assert time.monotonic() < deadline, "server start timed out"
    server = Server(process, ports.get("http", 0), output, ports.get("tcp"))
    try:
        yield server
    finally:
        # SIGTERM is the clean stop (serve() exits 0 after draining), so a measured run
        # (coverage's subprocess patch) keeps what the server process executed; stop()
        # falls back to SIGKILL if the drain takes too long.
        server.stop(signal.SIGTERM, timeout=10.0)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``safe-rpc ARGS`` from tests/apps (extra environment variables in ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "safe_rpc", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=APPS,
        env={**os.environ, **(env or {})},
    )


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A startup mistake: exit status 2 and one line on stderr naming the cause."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def http_request(
    body: bytes,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> bytes:
    head = {"Host": host, "Content-Type": "application/json", "Content-Length": str(len(body))}
    head.update(headers or {})
    lines = [f"{method} / HTTP/1.1", *(f"{k}: {v}" for k, v in head.items() if v != "")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length (or none for 204)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a response body")
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:length]


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(port) as sock:
        sock.sendall(raw)
        return read_response(sock)


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Wait until the server closes ``sock``; return how long it took (or fail)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        raise AssertionError(f"connection still open after {seconds} s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def connect_from(
    source: str, port: int, *, timeout: float = 10.0, rcvbuf: int | None = None
) -> socket.socket:
    """A connection to 127.0.0.1:``port`` from the loopback address ``source`` (a hostile
    peer on 127.0.0.2, so that per-address bounds can tell it from the test's own client).
    ``rcvbuf`` shrinks the receive buffer, so a peer that never reads fills up sooner."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def drain(sock: socket.socket, timeout: float = 5.0) -> int:
    """Read until the peer closes (or resets) the connection; the number of bytes read.
    Fails if the connection is still open and silent after ``timeout`` seconds."""
    sock.settimeout(timeout)
    total = 0
    try:
        while chunk := sock.recv(1 << 20):
            total += len(chunk)
    except TimeoutError:
        raise AssertionError(f"connection still open after {total} bytes") from None
    except ConnectionResetError:
        pass
    return total
