"""Framed TCP on the shared connection core: pending answer bytes bounded per connection
and per process (hostile peers that never read), rpc.authenticate as a notification, and
subscriptions over frames."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from servers import serve
from tcp_support import auth, connect, is_closed, recv, running_tcp, send

from safe_rpc import Context, Keyring, Limits, RPCServer

sys.path.insert(0, str(Path(__file__).parent / "apps"))
import big_app

FOUR_MB = 4_000_000


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def test_pending_bytes_bounded_for_peers_that_never_read() -> None:
    """5 authenticated connections each send 16 calls with a 4 MB answer and never read
    (the exact hostile-peers finding: +613 MiB before). The server holds at most its
    pending-bytes bounds, aborts them within write_timeout (2 s), and serves a legitimate
    client meanwhile; its RSS grows by far less than the answers asked for (320 MB)."""
    token = big_app.keyring.issue("mallory", ["big"], ttl=600)
    with serve("big_app:rpc", "--tcp", "127.0.0.1:0") as server:
        assert server.tcp_port is not None
        pid = server.process.pid
        before = rss_mib(pid)
        peak = before
        hogs = []
        for _ in range(5):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.tcp_port))
            assert "result" in auth(sock, token)
            for i in range(16):
                send(sock, {"jsonrpc": "2.0", "method": "blob", "params": [FOUR_MB], "id": i})
            hogs.append(sock)
        started = time.monotonic()
        with connect(server.tcp_port) as legit:
            assert "result" in auth(legit, big_app.keyring.issue("alice", [], ttl=600))
            send(legit, {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1})
            assert recv(legit)["result"] == 5
        while time.monotonic() - started < 3.0:
            peak = max(peak, rss_mib(pid))
            time.sleep(0.05)
        for sock in hogs:
            assert is_closed(sock, 2.0 + 4.0)  # aborted; a few bytes of an answer at most
            sock.close()
        print(f"server RSS {before:.0f} MiB -> peak {peak:.0f} MiB")
        assert peak - before < 160, f"server grew {peak - before:.0f} MiB"
        with connect(server.tcp_port) as legit:
            assert "result" in auth(legit, big_app.keyring.issue("alice", [], ttl=600))
            send(legit, {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 2})
            assert recv(legit)["result"] == 5


def test_tcp_authenticate_as_notification_gets_no_reply() -> None:
    """rpc.authenticate without an id authenticates silently (JSON-RPC 2.0 section 4.1:
    a notification is never answered); the next call is the first thing answered."""
    ring = Keyring({"k": b"k" * 32}, audience="t")
    rpc = RPCServer(keyring=ring)

    @rpc.method(scopes=["x"])
    def ping() -> str:
        return "pong"

    with running_tcp(rpc) as (_, port), connect(port) as sock:
        message = {"jsonrpc": "2.0", "method": "rpc.authenticate"}
        send(sock, {**message, "params": {"token": ring.issue("a", ["x"])}})
        send(sock, {"jsonrpc": "2.0", "method": "ping", "id": 7})
        assert recv(sock) == {"jsonrpc": "2.0", "result": "pong", "id": 7}
    with running_tcp(rpc) as (_, port), connect(port) as sock:
        send(sock, {**message, "params": {"token": "forged"}})
        assert is_closed(sock, 3.0)  # refused without an answer


def test_subscriptions_over_tcp_frames() -> None:
    """The same subscriptions serve framed TCP: id, items, end, unsubscribe, the cap."""
    rpc = RPCServer(limits=Limits(max_subscriptions_per_connection=2))

    @rpc.subscription(public=True)
    async def ticks(ctx: Context, n: int) -> AsyncIterator[int]:
        assert ctx.transport == "tcp"
        for i in range(n):
            yield i
            await asyncio.sleep(0.01)

    with running_tcp(rpc) as (_, port), connect(port) as sock:
        send(sock, {"jsonrpc": "2.0", "method": "ticks", "params": [2], "id": 1})
        sid = recv(sock)["result"]
        got = [recv(sock)["params"] for _ in range(3)]
        assert got == [
            {"subscription": sid, "result": 0},
            {"subscription": sid, "result": 1},
            {"subscription": sid, "end": True},
        ]
        for i in (2, 3, 4):
            send(sock, {"jsonrpc": "2.0", "method": "ticks", "params": [1000], "id": i})
        answers: list[dict[str, Any]] = []
        while len(answers) < 3:
            message = recv(sock)
            if "id" in message:
                answers.append(message)
        ids = [a["result"] for a in answers if "result" in a]
        assert len(ids) == 2
        assert [a["error"]["code"] for a in answers if "error" in a] == [-32009]
        send(sock, {"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": [ids[0]], "id": 5})
        while "id" not in (message := recv(sock)):
            pass
        assert message == {"jsonrpc": "2.0", "result": True, "id": 5}


def test_write_deadline_aborts_a_peer_that_stops_reading() -> None:
    """Two 4 MB answers to a peer that never reads cannot drain: aborted at write_timeout
    (1 s), not held forever; another client is served meanwhile."""
    with running_tcp(big_app.write_deadline_server()) as (server, port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        with sock:
            for i in range(2):
                send(sock, {"jsonrpc": "2.0", "method": "blob", "params": [FOUR_MB], "id": i})
            with connect(port) as legit:
                send(legit, {"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1})
                assert recv(legit)["result"] == 5
            time.sleep(0.5)
            assert server.connections == 1  # still writing to the hog
            assert server.rpc.pending_budget.used > 0
            time.sleep(3.0)  # never reading: the deadline, not a drain, must end it
            assert server.connections == 0
            assert server.rpc.pending_budget.used == 0
            assert is_closed(sock, 5.0)


def test_work_of_a_gone_connection_is_dropped() -> None:
    """Calls holding the in-flight cap are cancelled as soon as the peer resets."""
    running = {"now": 0}
    rpc = RPCServer(limits=Limits(max_inflight_per_connection=2))

    @rpc.method(public=True)
    async def wait(seconds: float) -> int:
        running["now"] += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            running["now"] -= 1
        return 1

    with running_tcp(rpc) as (_, port):
        sock = connect(port)
        for i in range(4):
            send(sock, {"jsonrpc": "2.0", "method": "wait", "params": [20.0], "id": i})
        deadline = time.monotonic() + 5
        while running["now"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert running["now"] == 2
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        deadline = time.monotonic() + 3
        while running["now"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert running["now"] == 0
