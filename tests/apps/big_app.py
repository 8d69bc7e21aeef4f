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
