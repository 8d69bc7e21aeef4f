"""The server the HTTP and TCP tests attack: short deadlines, small caps, a fixed test key."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from safe_rpc import Context, Keyring, Limits, RPCError, RPCServer

TEST_KEY = b"t" * 32
keyring = Keyring({"test": TEST_KEY}, audience="tests")

LIMITS = Limits(
    header_timeout=1.0,
    body_timeout=1.5,
    keepalive_timeout=1.0,
    call_timeout=1.0,
    max_inflight=4,
    max_connections=12,
    tcp_auth_timeout=1.0,
    tcp_frame_timeout=1.0,
    tcp_idle_timeout=2.0,
    write_timeout=2.0,
    max_inflight_per_connection=4,
)
rpc = RPCServer(keyring=keyring, limits=LIMITS)
public_rpc = RPCServer(limits=LIMITS)  # no keyring: public methods only
state = {"cancelled": 0, "finished": 0}


@rpc.method(public=True)
@public_rpc.method(public=True)
def add(a: int, b: int) -> int:
    return a + b


@rpc.method(public=True)
async def slow(seconds: float) -> str:
    """Sleeps; records whether it was cancelled by the call deadline."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        state["cancelled"] += 1
        raise
    state["finished"] += 1
    return "done"


@rpc.method(public=True)
def stats() -> dict[str, int]:
    return dict(state)


@rpc.method(scopes=["me"])
def whoami(ctx: Context) -> str:
    assert ctx.principal is not None
    return f"{ctx.principal.subject} via {ctx.transport}"


class Overdrawn(RPCError):
    """An application error with typed data, known to client and server."""

    code = 1101  # examples.bank uses 1001: codes are unique per registry
    message = "overdrawn"

    class Data(BaseModel):
        balance: int


class ServerOnly(RPCError, register=False):
    """An error code the client's registry does not know: it arrives as RemoteError."""

    code = 4242
    message = "server-only error"


@rpc.method(name="bank.withdraw", public=True)
def withdraw(amount: int) -> int:
    raise Overdrawn(data={"balance": 3})


@rpc.method(public=True)
def mystery() -> int:
    raise ServerOnly(data={"hint": "x"})


@rpc.method(public=True)
def echo(value: str) -> str:
    return value
