"""Failed authentications counted across every process that shares a store (SR-40).

Same interface as ``FailedAuthLimiter`` (the transports call ``blocked`` before verifying a
credential and ``record_failure`` after a failure), so the transports do not change. The
fleet-wide count lives in the store (one atomic ``hit`` per failure, off the request's
path); each process keeps the answer locally, so ``blocked`` never waits on the store. A
source is blocked in a process once that process saw the fleet-wide budget used up: at
most one more failure per process gets through than in a single process. A local
``FailedAuthLimiter`` always counts too, so a store outage never lifts the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from .._store.base import Rule, Store, StoreUnavailable, health_of
from .limiter import WINDOW, FailedAuthLimiter

__all__ = ["StoreAuthLimiter"]


class StoreAuthLimiter:
    """``per_minute`` failed authentications per source, counted in ``store``."""

    def __init__(self, store: Store, per_minute: int = 10, *, max_sources: int = 10_000) -> None:
        self.store = store
        self.per_minute = per_minute
        self.max_sources = max_sources
        self._local = FailedAuthLimiter(per_minute, max_sources=max_sources)
        self._until: OrderedDict[str, float] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def blocked(self, source: str) -> bool:
        """True if ``source`` used up its failures (fleet-wide, as this process last saw)."""
        if self._local.blocked(source):
            return True
        until = self._until.get(source)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._until[source]
        return False

    def record_failure(self, source: str) -> None:
        """Count one failed authentication from ``source`` here and in the store."""
        self._local.record_failure(source)
        rules = [Rule(f"auth:{source}", self.per_minute, WINDOW)]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                self._note(source, *self.store.hit(rules))
            except StoreUnavailable as exc:
                health_of(self.store).failed(exc)
            return
        task = loop.create_task(self._record(source, rules))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, source: str, rules: list[Rule]) -> None:
        try:
            async with asyncio.timeout(self.store.timeout):
                self._note(source, *await self.store.hit_async(rules))
        except (StoreUnavailable, TimeoutError) as exc:
            health_of(self.store).failed(exc)  # the local count still holds

    def _note(self, source: str, admitted: bool, wait: float) -> None:
        health_of(self.store).ok()
        if admitted and wait <= 0:
            return
        self._until[source] = time.monotonic() + wait
        self._until.move_to_end(source)
        while len(self._until) > self.max_sources:
            self._until.popitem(last=False)

    async def aclose(self) -> None:
        """Wait for the store writes still under way (each bounded by the store timeout)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
