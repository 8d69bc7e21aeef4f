"""The service of the fleet tests (tests/test_store_fleet.py): `--keys` and `--store` attach
the keyring and the store; short store deadlines so faults show within seconds."""

from __future__ import annotations

import os

from safe_rpc import Limits, RPCServer, Unauthenticated

rpc = RPCServer(limits=Limits(store_timeout=0.3, revocation_max_stale=2.0))


@rpc.method(public=True)
def ping() -> int:
    return os.getpid()


@rpc.method(scopes=["w"])
def whoami() -> int:
    return os.getpid()


@rpc.method(scopes=["w"], rate="10/minute")
def limited() -> int:
    return os.getpid()


@rpc.method(public=True)
def check(token: str) -> list[int]:
    """[this worker's pid, 1 if it accepts ``token`` else 0]: each worker's own view."""
    assert rpc.keyring is not None
    try:
        rpc.keyring.verify(token)
    except Unauthenticated:
        return [os.getpid(), 0]
    return [os.getpid(), 1]
