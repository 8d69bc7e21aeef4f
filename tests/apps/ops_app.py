"""The server the operations tests run: a lifespan, ctx.state, a private method.

``OPS_APP_LIFESPAN=fail`` makes the lifespan fail at startup.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from safe_rpc import Context, Keyring, RPCServer

keyring = Keyring({"ops": b"p" * 32}, audience="ops")


@contextlib.asynccontextmanager
async def lifespan(server: RPCServer) -> AsyncIterator[dict[str, Any]]:
    if os.environ.get("OPS_APP_LIFESPAN") == "fail":
        raise ConnectionRefusedError("database at 127.0.0.1:5432 refused")
    print("ops_app: lifespan entered", flush=True)
    yield {"pool": "pool-1"}
    print("ops_app: lifespan left", flush=True)


rpc = RPCServer(lifespan=lifespan)
keyed = RPCServer(keyring=keyring)


@rpc.method(public=True)
@keyed.method(public=True)
def add(a: int, b: int) -> int:
    return a + b


@rpc.method(public=True)
def pool(ctx: Context) -> str:
    return str(ctx.state.get("pool", "none"))


@keyed.method(scopes=["ops"])
def whoami(ctx: Context) -> str:
    return ctx.principal.subject if ctx.principal else "anonymous"
