"""The network tables of benchmarks/adversarial.py: a served process under attack, and the
client against hostile servers. See that script's docstring for what is measured."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE.parent / "tests" / "apps"
sys.path.insert(0, str(HERE.parent / "tests"))

from fake_servers import ERRORS, gzip_bomb, loopback_server  # noqa: E402

from safe_rpc import AsyncClient, Client  # noqa: E402

ADD = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'
MiB = 1 << 20
ATTACK_ROWS = {
    "silent": "100 silent sockets (SR-17, SR-19, finding 1)",
    "never-read": "5 pipelined 900 KB answers, never read (finding 1)",
    "smuggle": "Content-Length + Transfer-Encoding, 2nd request behind (finding 6)",
    "big-header": "one 64 KiB header in one write (finding 7)",
    "nested-unknown": "flood: unknown member in a nested model (finding 8)",
    "flood": "flood of valid calls (control: the cost of any flood)",
}


@contextmanager
def served() -> Iterator[tuple[int, int]]:
    """A ``safe-rpc serve`` process with default Limits: (port, pid)."""
    command = [sys.executable, "-m", "safe_rpc", "serve", "adversarial_app:rpc"]
    command += ["--http", "127.0.0.1:0"]
    process = subprocess.Popen(
        command, cwd=APPS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    port = 0
    while not port:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the server did not start")
        found = re.search(r"listening on http://[^:]+:(\d+)/", line)
        port = int(found.group(1)) if found else 0
    # Keep its (log) output flowing so the pipe never blocks the server.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    try:
        yield port, process.pid
    finally:
        process.kill()
        process.wait(10)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def legitimate(port: int, seconds: float, rate: float = 20.0) -> tuple[int, list[float]]:
    """Calls at ``rate`` per second, each on a new connection: (successes, latencies)."""
    ok = 0
    latencies: list[float] = []
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/", ADD, {"Content-Type": "application/json"})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            ok += response.status == 200 and json.loads(body).get("result") == 5
        except (OSError, http.client.HTTPException, ValueError):
            pass
        latencies.append(time.monotonic() - now)
        time.sleep(max(0.0, 1 / rate - (time.monotonic() - now)))
    return ok, latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # clock ticks; 100 per second on Linux


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)] if values else float("nan")


def run_attack(name: str | None, seconds: float, connections: int) -> tuple[str, ...]:
    with served() as (port, pid):
        time.sleep(0.5)
        before = rss(pid)
        peak = before
        cpu_before = cpu_seconds(pid)
        hostile = None
        if name is not None:
            command = [sys.executable, str(HERE / "attacks.py"), name, str(port), str(seconds)]
            command += ["--connections", str(connections)]
            hostile = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            time.sleep(min(1.0, seconds / 5))  # let the attack reach full strength
        result: list[tuple[int, list[float]]] = []
        worker = threading.Thread(target=lambda: result.append(legitimate(port, seconds)))
        worker.start()
        while worker.is_alive():
            peak = max(peak, rss(pid))
            worker.join(0.25)
        cpu = cpu_seconds(pid) - cpu_before
        counts = hostile.communicate(timeout=seconds + 30)[0].strip() if hostile else ""
        ok, latencies = result[0]
    growth = (peak - before) / MiB
    return (
        f"{100 * ok / max(1, len(latencies)):.1f}% of {len(latencies)}",
        f"{p99(latencies) * 1000:.1f}",
        f"{growth:.1f}",
        f"{cpu:.1f}",
        counts.replace("|", "/"),
    )


def attacks_table(seconds: float, connections: int, only: list[str] | None) -> None:
    quiet = run_attack(None, seconds, 0)
    print(
        f"Legitimate client on 127.0.0.1, 20 calls/s on new connections, {seconds:.0f} s per "
        f"row; {connections} hostile connections from 127.0.0.2; default Limits.\n"
    )
    print(
        "| attack | legit success | legit p99 ms | p99 / quiet | server RSS growth MiB "
        "| server CPU s |\n|---|---|---|---|---|---|"
    )
    print(f"| none (quiet) | {quiet[0]} | {quiet[1]} | 1.0 | {quiet[2]} | {quiet[3]} |")
    notes = []
    for name, label in ATTACK_ROWS.items():
        if only and name not in only:
            continue
        success, latency, growth, cpu, counts = run_attack(name, seconds, connections)
        ratio = float(latency) / max(float(quiet[1]), 0.001)
        print(f"| {label} | {success} | {latency} | {ratio:.1f} | {growth} | {cpu} |", flush=True)
        notes.append(f"- {name}: attacker saw {counts}")
    print("\n" + "\n".join(notes))


# -- the client against hostile servers ---------------------------------------------------


def fake(answer: Callable[[socket.socket], None], *, http: bool) -> AbstractContextManager[str]:
    """Answer the first request of every connection with ``answer``, then hold it."""

    def handle(conn: socket.socket, number: int, stop: threading.Event) -> None:
        conn.settimeout(10)
        data = b""
        while (b"\r\n\r\n" not in data) if http else len(data) < 8:
            data += conn.recv(65536)
        answer(conn)
        stop.wait(5)

    return loopback_server(handle, http=http)


def outcome(call: Callable[[], object]) -> tuple[str, float]:
    started = time.monotonic()
    try:
        call()
        name = "returned a value"
    except Exception as exc:  # the row reports what was raised
        name = type(exc).__name__
    return name, time.monotonic() - started


def client_table() -> None:
    bomb = gzip_bomb()
    head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    rows = []

    def send_bomb(conn: socket.socket) -> None:
        extra = f"content-encoding: gzip, gzip\r\ncontent-length: {len(bomb)}\r\n\r\n"
        conn.sendall((head + extra).encode() + bomb)

    with fake(send_bomb, http=True) as url, Client(url, timeout=10) as client:
        tracemalloc.start()
        name, spent = outcome(lambda: client.add(2, 3))
        peak = tracemalloc.get_traced_memory()[1] / MiB
        tracemalloc.stop()
    label = f"`Content-Encoding: gzip, gzip`, {len(bomb):,} bytes = 1 GiB of zeros"
    rows.append((label, name, spent, f"{peak:.1f} MiB peak traced"))

    def dripper(prefix: bytes) -> Callable[[socket.socket], None]:
        def drip(conn: socket.socket) -> None:
            conn.sendall(prefix)
            for _ in range(100):
                time.sleep(1)
                conn.sendall(b" ")

        return drip

    http_drip = dripper(f"{head}content-length: 100\r\n\r\n".encode())
    tcp_drip = dripper((100).to_bytes(4, "big"))
    for label, drip, is_http in (("HTTP", http_drip, True), ("TCP", tcp_drip, False)):
        with fake(drip, http=is_http) as url:
            with Client(url, timeout=3) as client:
                name, spent = outcome(lambda c=client: c.add(2, 3))  # type: ignore[misc]
            rows.append((f"{label} answer dripped 1 byte/s, Client(timeout=3)", name, spent, ""))

            async def call(url: str = url) -> None:
                async with AsyncClient(url, timeout=3) as client:
                    await client.add(2, 3)

            name, spent = outcome(lambda: asyncio.run(call()))
            rows.append(
                (f"{label} answer dripped 1 byte/s, AsyncClient(timeout=3)", name, spent, "")
            )

    error = {"code": 1001, "message": "insufficient funds", "data": {"balance": "3", "evil": 1}}
    body = json.dumps({"jsonrpc": "2.0", "error": error, "id": 1}).encode()

    def lenient(conn: socket.socket) -> None:
        conn.sendall(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)

    with fake(lenient, http=True) as url, Client(url, errors=ERRORS) as client:
        name, spent = outcome(lambda: client.add(2, 3))
    rows.append(('error data `{"balance":"3","evil":1}` for code 1001', name, spent, ""))

    print("| hostile server | client raised | after s | memory |\n|---|---|---|---|")
    for label, name, spent, memory in rows:
        print(f"| {label} | {name} | {spent:.2f} | {memory} |")
