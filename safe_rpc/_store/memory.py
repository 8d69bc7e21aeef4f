"""``MemoryStore``: the default store, for one process (nothing survives a restart)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final

from .base import KINDS, EventHub, Revocations, Rule, gcra_all

__all__ = ["MemoryStore"]

#: Rate counters kept at once; the least recently used is forgotten first (an attacker
#: rotating addresses cannot grow memory without bound).
MAX_COUNTERS: Final = 100_000
#: Single-use ids kept at once before expired ones are swept.
MAX_CLAIMS: Final = 100_000


class MemoryStore:
    """Security state in this process's memory: correct for one process, shared with none.

    Example:
        ```python
        from safe_rpc import MemoryStore, RPCServer

        rpc = RPCServer(store=MemoryStore(), rate="600/minute")
        ```
    """

    kind = "memory"
    shared = False

    def __init__(self, *, clock: Callable[[], float] = time.time, timeout: float = 1.0) -> None:
        self.timeout = timeout
        self._clock = clock
        self._version = 0
        self._revoked: dict[str, dict[str, float]] = {kind: {} for kind in KINDS}
        self._counters: OrderedDict[str, float] = OrderedDict()
        self._claims: dict[str, float] = {}
        self._events = EventHub()

    def describe(self) -> str:
        return "memory"

    def ping(self) -> None:
        return None

    async def ping_async(self) -> None:
        return None

    # -- revocations ------------------------------------------------------------------------

    def revoke(self, kind: str, value: str, until: float | None) -> None:
        table = self._revoked[kind]
        stamp = float("inf") if until is None else until
        table[value] = max(table.get(value, stamp), stamp)
        now = self._clock()
        jtis = self._revoked["jti"]
        for old in [jti for jti, end in jtis.items() if end < now]:
            del jtis[old]
        self._version += 1

    async def revoke_async(self, kind: str, value: str, until: float | None) -> None:
        self.revoke(kind, value, until)

    def version(self) -> int:
        return self._version

    async def version_async(self) -> int:
        return self._version

    def revocations(self) -> Revocations:
        return Revocations(
            version=self._version,
            kids=frozenset(self._revoked["kid"]),
            jtis=dict(self._revoked["jti"]),
            subjects=dict(self._revoked["sub"]),
        )

    async def revocations_async(self) -> Revocations:
        return self.revocations()

    # -- counters and single-use ids -------------------------------------------------------------

    def hit(self, rules: Sequence[Rule]) -> tuple[bool, float]:
        counters = self._counters
        now = self._clock()
        admitted, wait, new = gcra_all([counters.get(r.key, 0.0) for r in rules], now, rules)
        for rule, tat in zip(rules, new, strict=False):
            counters[rule.key] = tat
            counters.move_to_end(rule.key)
        while len(counters) > MAX_COUNTERS:
            counters.popitem(last=False)
        return admitted, wait

    async def hit_async(self, rules: Sequence[Rule]) -> tuple[bool, float]:
        return self.hit(rules)

    def claim(self, key: str, until: float) -> bool:
        now = self._clock()
        claims = self._claims
        if len(claims) >= MAX_CLAIMS:
            for old in [k for k, end in claims.items() if end < now]:
                del claims[old]
        end = claims.get(key)
        if end is not None and end >= now:
            return False
        claims[key] = until
        return True

    async def claim_async(self, key: str, until: float) -> bool:
        return self.claim(key, until)

    # -- events ------------------------------------------------------------------------------

    async def publish(self, channel: str, data: bytes) -> None:
        await self._events.publish(channel, data)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._events.subscribe(channel)

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
