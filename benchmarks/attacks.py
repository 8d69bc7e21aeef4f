"""Hostile HTTP peers for benchmarks/adversarial.py, run as their own process.

    python benchmarks/attacks.py ATTACK PORT SECONDS [--connections 100]

Each of ``--connections`` workers connects from 127.0.0.2 (so per-address bounds apply to
it, not to the measured client on 127.0.0.1) and repeats its attack until SECONDS have
passed, reconnecting as soon as the server lets go. Prints one JSON line of counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable

HOSTILE = "127.0.0.2"
Worker = Callable[[int, float, Counter[str]], Awaitable[None]]


def http_request(body: bytes, extra: str = "") -> bytes:
    head = (
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


ADD = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'
# Finding 1's payload: an error answer echoing a 900,000-character id.
ECHO = b'{"jsonrpc":"2.0","method":"no.such.method","id":"' + b"i" * 900_000 + b'"}'
NESTED = (
    b'{"jsonrpc":"2.0","method":"norm","params":[{"x":1,"y":2,"__class__":"os.system"}],"id":1}'
)
SMUGGLE = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"%x\r\n%s\r\n0\r\n\r\n" % (len(ADD), ADD)
    + http_request(ADD)
)
BIG_HEADER = http_request(ADD, "X-Big: " + "a" * 65536 + "\r\n")


async def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        sock.bind((HOSTILE, 0))
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


async def read_until_closed(sock: socket.socket, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(max(seconds, 0.01)):
        while await loop.sock_recv(sock, 65536):
            pass


Attack = Callable[[socket.socket, float, Counter[str]], Awaitable[str]]


def repeat(attack: Attack, rcvbuf: int | None = None) -> Worker:
    """A worker: connect, attack, and again until the end; count how each connection ended
    (the attack returns a label, a reset or refused write counts as "reset by server")."""

    async def worker(port: int, end: float, counts: Counter[str]) -> None:
        while time.monotonic() < end:
            try:
                sock = await connect(port, rcvbuf)
            except OSError:
                counts["connect failed"] += 1
                await asyncio.sleep(0.05)
                continue
            counts["connections"] += 1
            try:
                counts[await attack(sock, end, counts)] += 1
            except TimeoutError:
                counts["still open at the end"] += 1
            except OSError:
                counts["reset by server"] += 1
            finally:
                sock.close()
            await asyncio.sleep(0.05)  # no busy loop when the server refuses at once

    return worker


async def silent(sock: socket.socket, end: float, counts: Counter[str]) -> str:
    """Connect and say nothing (SR-17, SR-19: slots held until the header deadline)."""
    await read_until_closed(sock, end - time.monotonic())
    return "closed by server"


async def never_read(sock: socket.socket, end: float, counts: Counter[str]) -> str:
    """Pipeline 5 requests with 900 KB answers and never read (finding 1)."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2):
            await loop.sock_sendall(sock, http_request(ECHO) * 5)
    while time.monotonic() < end:  # probe with blank lines: a write fails once aborted
        await asyncio.sleep(0.5)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await loop.sock_sendall(sock, b"\r\n")
    return "still open at the end"


def send_and_wait(payload: bytes) -> Attack:
    """Send ``payload`` and wait for the server to close (up to 5 s)."""

    async def attack(sock: socket.socket, end: float, counts: Counter[str]) -> str:
        await asyncio.get_running_loop().sock_sendall(sock, payload)
        await read_until_closed(sock, min(5.0, end - time.monotonic()))
        return "closed by server"

    return attack


def flood(body: bytes) -> Attack:
    """Requests one after the other on a keep-alive connection, each answer read."""
    request = http_request(body)

    async def attack(sock: socket.socket, end: float, counts: Counter[str]) -> str:
        loop = asyncio.get_running_loop()
        while time.monotonic() < end:
            await loop.sock_sendall(sock, request)
            data = b""
            while b'"id":1}' not in data and b'"id":null}' not in data:
                chunk = await loop.sock_recv(sock, 65536)
                if not chunk:
                    raise ConnectionError
                data += chunk
            counts["answered"] += 1
        return "open at the end"

    return attack


ATTACKS: dict[str, Worker] = {
    "silent": repeat(silent),
    "never-read": repeat(never_read, rcvbuf=4096),
    "smuggle": repeat(send_and_wait(SMUGGLE)),  # Content-Length with Transfer-Encoding
    "big-header": repeat(send_and_wait(BIG_HEADER)),  # one 64 KiB header in one write
    "nested-unknown": repeat(flood(NESTED)),
    "flood": repeat(flood(ADD)),
}


async def run(name: str, port: int, seconds: float, connections: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    end = time.monotonic() + seconds
    worker = ATTACKS[name]
    await asyncio.gather(*(worker(port, end, counts) for _ in range(connections)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attack", choices=sorted(ATTACKS))
    parser.add_argument("port", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    counts = asyncio.run(run(args.attack, args.port, args.seconds, args.connections))
    print(json.dumps(dict(counts)), flush=True)


if __name__ == "__main__":
    main()
