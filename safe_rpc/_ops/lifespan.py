"""Running an ``RPCServer``'s lifespan: resources opened before serving, closed after.

The lifespan is the Starlette/FastAPI shape: a callable taking the server and returning an
async context manager; whatever mapping it yields becomes ``Context.state`` for handlers in
this process (each worker process runs its own).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from .._core.context import EMPTY_STATE
from .._core.errors import ConfigError

if TYPE_CHECKING:
    from .._core.pipeline import Pipeline

__all__ = ["Lifespan", "LifespanError", "running"]

#: ``RPCServer(lifespan=...)``: called with the server, returns an async context manager
#: that may yield a mapping (``Context.state``) or None.
Lifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]


class LifespanError(ConfigError):
    """The server's lifespan failed to start (the message names the exception type)."""


@contextlib.asynccontextmanager
async def running(rpc: Pipeline, lifespan: Lifespan | None) -> AsyncIterator[None]:
    """Enter ``lifespan`` (if any) for ``rpc``, publish its state, leave it afterwards."""
    if lifespan is None:
        yield
        return
    manager = lifespan(rpc)
    try:
        state = await manager.__aenter__()
    except Exception as exc:
        # One line for the operator; the traceback stays available with --log-level debug.
        raise LifespanError(f"the server's lifespan failed at startup: {exc!r}") from exc
    if state is not None and not isinstance(state, Mapping):
        await manager.__aexit__(None, None, None)
        raise LifespanError("a lifespan must yield a mapping (or None), which is ctx.state")
    rpc.state = types.MappingProxyType(dict(state)) if state else EMPTY_STATE
    try:
        yield
    except BaseException as exc:
        rpc.state = EMPTY_STATE
        if not await manager.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        rpc.state = EMPTY_STATE
        await manager.__aexit__(None, None, None)
