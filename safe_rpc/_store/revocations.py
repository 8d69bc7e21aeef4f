"""The revocation set as one process sees it: a local cache kept fresh from the store.

The hot path (every token check) reads only this cache: a clock read and set lookups, no
store round trip. With a shared store a poller task reads the store's revocation *version*
every ``staleness / 4`` seconds and reloads the set when it changed, so a revocation made
anywhere is in force here within ``staleness``. When the store cannot be reached the cache
stays in force; after ``max_stale`` seconds without a successful read ``too_stale()`` is
true and the server refuses private calls (-32009) until the store answers again.

The cache only ever grows (expired ``jti`` entries aside): a store that lost its data (a
Redis restarted without persistence) is seeded again from the cache, so a revocation is
not forgotten while any process still remembers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable

from .._core.context import Principal
from .base import Revocations, Store, StoreUnavailable, health_of

__all__ = ["RevocationView"]

logger = logging.getLogger("safe_rpc.store")


class RevocationView:
    """Revoked key ids, token ids and subjects, cached for the hot path."""

    def __init__(
        self,
        store: Store,
        *,
        staleness: float = 1.0,
        max_stale: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        #: False for a store only this process uses: never stale, nothing to poll.
        self.shared = store.shared
        self.max_stale = max_stale
        self._clock = clock
        # A store only this process uses never changes behind our back: nothing to poll.
        self._interval = staleness / 4 if store.shared else math.inf
        self._staleness = staleness if store.shared else math.inf
        self._inline_attempt = -math.inf
        self._kids: frozenset[str] = frozenset()
        self._jtis: dict[str, float] = {}
        self._subjects: dict[str, float] = {}
        self._version = 0
        self._health = health_of(store)
        self._task: asyncio.Task[None] | None = None
        self._sync_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._attempted = -math.inf
        self._checked = -math.inf  # never read yet: too stale until the first read
        if store.shared:
            self.refresh_sync()
        else:
            self._install(store.revocations())
            self._checked = math.inf

    # -- the hot path ---------------------------------------------------------------------------

    def revoked(self, kid: str | None, jti: str | None, subject: str, iat: float) -> bool:
        if time.monotonic() - self._checked > self._interval:
            self._due()
        if kid in self._kids or jti in self._jtis:
            return True
        before = self._subjects.get(subject)
        return before is not None and iat < before

    def revoked_principal(self, principal: Principal) -> bool:
        iat = principal.claims.get("iat", 0)
        return self.revoked(principal.key_id, principal.token_id, principal.subject, iat)

    def fresh(self) -> bool:
        """True while the cache is within ``staleness`` of the store (the common case)."""
        return time.monotonic() - self._checked <= self._staleness

    def needs_refresh(self) -> bool:
        """True when a private call should wait for one store read first: the cache is
        older than ``staleness`` (the process was idle, or the poller could not read).
        At most once per poll interval, so an outage does not slow every call."""
        now = time.monotonic()
        if now - self._checked <= self._staleness or now - self._inline_attempt < self._interval:
            return False
        self._inline_attempt = now
        return True

    def too_stale(self) -> bool:
        """True once the cache went ``max_stale`` seconds without a successful read."""
        return time.monotonic() - self._checked > self.max_stale

    def snapshot(self) -> Revocations:
        return Revocations(self._version, self._kids, dict(self._jtis), dict(self._subjects))

    # -- writes -----------------------------------------------------------------------------------

    def revoke(self, kind: str, value: str, until: float | None) -> None:
        """Record a revocation in the store and in force here at once.

        Raises:
            StoreUnavailable: the store did not take it (it is in force in this process
                only, and written back when the store answers again).
        """
        self._apply(kind, value, until)
        self.store.revoke(kind, value, until)

    async def revoke_async(self, kind: str, value: str, until: float | None) -> None:
        self._apply(kind, value, until)
        await self.store.revoke_async(kind, value, until)

    def _apply(self, kind: str, value: str, until: float | None) -> None:
        if kind not in ("kid", "jti", "sub"):
            raise ValueError("revocation kind must be kid, jti or sub")
        stamp = math.inf if until is None else until
        self._merge(
            frozenset([value]) if kind == "kid" else frozenset(),
            {value: stamp} if kind == "jti" else {},
            {value: stamp} if kind == "sub" else {},
        )

    def _merge(
        self, kids: frozenset[str], jtis: dict[str, float], subjects: dict[str, float]
    ) -> None:
        # Copy on write under a lock: readers (the hot path, in any thread) only ever see a
        # complete table, and concurrent writers (poller, handler threads) lose nothing.
        with self._write_lock:
            now = self._clock()
            new_jtis = {j: end for j, end in self._jtis.items() if end >= now}
            for jti, end in jtis.items():
                new_jtis[jti] = max(end, new_jtis.get(jti, end))
            new_subjects = dict(self._subjects)
            for sub, before in subjects.items():
                new_subjects[sub] = max(before, new_subjects.get(sub, before))
            self._kids = self._kids | kids
            self._jtis = new_jtis
            self._subjects = new_subjects

    # -- keeping the cache fresh ---------------------------------------------------------------

    def _due(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous caller: read inline (bounded by the timeout)
            with self._sync_lock:  # concurrent threads wait for the one read, then use it
                now = time.monotonic()
                if now - self._checked <= self._interval or now - self._attempted < self._interval:
                    return  # another thread just read; or the store is failing: no hammering
                self._attempted = now
                self.refresh_sync()
            return
        now = time.monotonic()
        if now - self._attempted < self._interval:
            return
        self._attempted = now
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._poll(), name="safe_rpc revocation poller")

    async def _poll(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval)

    def refresh_sync(self) -> None:
        try:
            version = self.store.version()
            if version != self._version:
                self._install(self.store.revocations())
                if version < self._version:
                    self._heal_sync()
        except StoreUnavailable as exc:
            self._health.failed(exc)
            return
        self._fresh()

    async def refresh(self) -> None:
        try:
            version = await self.store.version_async()
            if version != self._version:
                self._install(await self.store.revocations_async())
                if version < self._version:
                    await self._heal()
        except StoreUnavailable as exc:
            self._health.failed(exc)
            return
        self._fresh()

    def _fresh(self) -> None:
        self._checked = time.monotonic()
        self._health.ok()

    def _install(self, snapshot: Revocations) -> None:
        # Union with what we know; a version lower than ours means the store lost data.
        behind = snapshot.version < self._version
        self._merge(snapshot.kids, snapshot.jtis, snapshot.subjects)
        if not behind:
            self._version = snapshot.version

    def _pending(self) -> list[tuple[str, str, float | None]]:
        logger.warning(
            "store %s lost revocations; writing back the cached ones", self.store.describe()
        )
        items: list[tuple[str, str, float | None]] = [("kid", kid, None) for kid in self._kids]
        items += [("jti", jti, end) for jti, end in self._jtis.items()]
        items += [("sub", sub, None if math.isinf(t) else t) for sub, t in self._subjects.items()]
        self._version = 0
        return items

    def _heal_sync(self) -> None:
        for item in self._pending():
            self.store.revoke(*item)
        self._version = self.store.version()

    async def _heal(self) -> None:
        for item in self._pending():
            await self.store.revoke_async(*item)
        self._version = await self.store.version_async()

    def stop(self) -> None:
        """Cancel the poller without waiting (the view is being replaced)."""
        task, self._task = self._task, None
        if task is not None and not task.get_loop().is_closed():
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def aclose(self) -> None:
        """Stop the poller (called by ``RPCServer.aclose`` and at shutdown)."""
        task, self._task = self._task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
