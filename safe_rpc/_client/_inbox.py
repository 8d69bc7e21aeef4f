"""The client's queue of one subscription (no I/O library: ``_clients`` imports it with
``import safe_rpc``, the WebSocket stack only loads with the first ws:// client)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from .._core.errors import SlowConsumer

__all__ = ["Inbox"]


class Inbox:
    """The bounded queue of one subscription on the client."""

    __slots__ = ("closed", "error", "id", "items", "limit", "wakeup")

    def __init__(self, limit: int) -> None:
        self.id: str | None = None
        self.limit = limit
        self.items: deque[Any] = deque()
        self.error: BaseException | None = None
        self.closed = False  # ended by the server, failed, or unsubscribed
        self.wakeup: asyncio.Event | None = None

    def put(self, params: dict[str, Any], rebuild: Any) -> None:
        if self.closed:
            return
        if "result" in params:
            if len(self.items) >= self.limit:
                self.fail(SlowConsumer(), drop=True)
                return
            self.items.append(params["result"])
        elif "end" in params:
            self.closed = True
        else:
            self.fail(rebuild(params["error"]))
        self._wake()

    def fail(self, error: BaseException, *, drop: bool = False) -> None:
        """End with ``error``, raised once the items already received were taken (all of
        them dropped with ``drop``)."""
        if not self.closed:
            self.error = error
            self.closed = True
        if drop:
            self.items.clear()
        self._wake()

    def _wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()
