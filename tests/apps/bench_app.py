"""The service benchmarks/client_roundtrip.py calls: one scoped method, default Limits."""

from __future__ import annotations

from safe_rpc import RPCServer

rpc = RPCServer()  # `--keys` attaches the keyring


@rpc.method(scopes=["bench"])
def add(a: int, b: int) -> int:
    return a + b


# benchmarks/store.py: the same call under a quota that is counted but never reached.
@rpc.method(scopes=["bench"], rate="999999999/second")
def add_quota(a: int, b: int) -> int:
    return a + b
