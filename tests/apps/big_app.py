"""A server with 4 MB answers, for the pending-bytes test (issue: hostile peers, finding 4)."""

from __future__ import annotations

from safe_rpc import Keyring, Limits, RPCServer

keyring = Keyring({"big": b"b" * 32}, audience="big-tests")
rpc = RPCServer(keyring=keyring, limits=Limits(write_timeout=2.0))


@rpc.method(public=True)
def add(a: int, b: int) -> int:
    return a + b


@rpc.method(scopes=["big"])
def blob(size: int) -> str:
    return "x" * size


def write_deadline_server() -> RPCServer:
    """Bounds so large that only the write deadline (1 s) can end a peer that stops reading."""
    limits = Limits(
        write_timeout=1.0, max_pending_bytes_per_connection=256 * 2**20, max_pending_bytes=2**30
    )
    server = RPCServer(limits=limits)
    server.method(public=True)(add)
    server.method(public=True)(blob)
    return server
