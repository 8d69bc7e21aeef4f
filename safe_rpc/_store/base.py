"""The ``Store`` protocol and what its backends share.

A store holds the security state that several processes (and hosts) must agree on:
revocations, rate counters (quotas and failed authentications), single-use token ids and
event channels. It stores identifiers only (``jti``, ``kid``, subject, client address),
never token bytes or keys.

Every operation exists twice: a plain method for synchronous callers (``RPCServer.dispatch``,
``Keyring.revoke_*``, the CLI) and an ``*_async`` method for event loops. Both are bounded by
the store's ``timeout``; a failure of any kind (unreachable, timed out, refused) raises
``StoreUnavailable`` and nothing else, so callers decide "fail open or closed" in one place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, Protocol, runtime_checkable

__all__ = [
    "EventHub",
    "Health",
    "Revocations",
    "Rule",
    "Store",
    "StoreUnavailable",
    "check_channel",
    "gcra",
    "health_of",
]

logger = logging.getLogger("safe_rpc.store")

#: Revocation kinds: a key id, one token id (until its expiry), a subject (tokens issued
#: before a time).
KINDS: Final = ("kid", "jti", "sub")
_CHANNEL: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
#: Items a subscriber may fall behind before it is dropped (the WebSocket layer has its own).
EVENT_QUEUE: Final = 64


class StoreUnavailable(Exception):
    """The store could not answer within its timeout (down, unreachable, refused).

    Attributes:
        reason: the short cause for logs (``ConnectionError``, ``timed out``...).
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """One rate: at most ``limit`` hits per ``period`` seconds under ``key``."""

    key: str
    limit: int
    period: float


@dataclasses.dataclass(frozen=True, slots=True)
class Revocations:
    """A snapshot of the revocation set.

    Attributes:
        version: increases with every revocation written (cheap change detection).
        kids: revoked key ids.
        jtis: revoked token id -> the time (epoch seconds) after which it may be forgotten.
        subjects: subject -> tokens issued (``iat``) before this time are revoked.
    """

    version: int = 0
    kids: frozenset[str] = frozenset()
    jtis: dict[str, float] = dataclasses.field(default_factory=dict)
    subjects: dict[str, float] = dataclasses.field(default_factory=dict)


@runtime_checkable
class Store(Protocol):
    """What safe_rpc needs from a shared-state backend (see the module docstring).

    ``MemoryStore`` (one process), ``SQLiteStore`` (processes on one host) and
    ``RedisStore`` (a fleet) implement it; one contract test suite runs against each.
    """

    #: ``"memory"``, ``"sqlite"`` or ``"redis"``.
    kind: str
    #: True when other processes see the same state (required by ``--workers N > 1``).
    shared: bool
    #: Seconds any one operation may take before ``StoreUnavailable``.
    timeout: float

    def describe(self) -> str:
        """The store's location for logs, with any password removed."""
        ...

    def ping(self) -> None: ...
    async def ping_async(self) -> None: ...

    def revoke(self, kind: str, value: str, until: float | None) -> None:
        """Record a revocation (``kind`` in kid/jti/sub) and bump the version."""
        ...

    async def revoke_async(self, kind: str, value: str, until: float | None) -> None: ...

    def version(self) -> int:
        """The revocation version (changes whenever a revocation is written)."""
        ...

    async def version_async(self) -> int: ...
    def revocations(self) -> Revocations: ...
    async def revocations_async(self) -> Revocations: ...

    def hit(self, rules: Sequence[Rule]) -> tuple[bool, float]:
        """Count one hit against every rule, atomically and all-or-nothing.

        Returns ``(admitted, wait)``: when refused, nothing was counted and ``wait`` is the
        seconds until a hit would be admitted; when admitted, ``wait`` is the seconds until
        the *next* hit would be (0.0 while capacity remains).
        """
        ...

    async def hit_async(self, rules: Sequence[Rule]) -> tuple[bool, float]: ...

    def claim(self, key: str, until: float) -> bool:
        """Record ``key`` until ``until`` (epoch seconds); False if it was already there."""
        ...

    async def claim_async(self, key: str, until: float) -> bool: ...

    async def publish(self, channel: str, data: bytes) -> None:
        """Send ``data`` to every current subscriber of ``channel`` (at most once each)."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """``async with store.subscribe(ch) as items: async for data in items: ...``"""
        ...

    def close(self) -> None: ...
    async def aclose(self) -> None: ...


def check_channel(channel: str) -> str:
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
        raise ValueError("a channel name is 1-128 characters of A-Z a-z 0-9 _ . : -")
    return channel


def gcra(tat: float, now: float, rule: Rule) -> tuple[float, float]:
    """The generic cell rate algorithm for one rule.

    ``tat`` is the stored "theoretical arrival time". Returns ``(new_tat, over)``: ``over``
    > 0 means the hit is refused and is the wait in seconds. A burst of ``limit`` hits is
    admitted, then one per ``period / limit`` seconds: never more than ``limit`` hits in
    any window of ``period`` seconds beyond that steady rate.
    """
    interval = rule.period / rule.limit
    new_tat = max(tat, now) + interval
    return new_tat, new_tat - rule.period - now


def gcra_all(
    tats: Sequence[float], now: float, rules: Sequence[Rule]
) -> tuple[bool, float, list[float]]:
    """``gcra`` over several rules, all-or-nothing: ``(admitted, wait, new_tats)``."""
    results = [gcra(tat, now, rule) for tat, rule in zip(tats, rules, strict=True)]
    worst = max((over for _, over in results), default=0.0)
    if worst > 0:
        return False, worst, []
    new_tats = [new for new, _ in results]
    pairs = zip(new_tats, rules, strict=True)
    wait = max((new + r.period / r.limit - r.period - now for new, r in pairs), default=0.0)
    return True, max(0.0, wait), new_tats


def retry_after(wait: float) -> int:
    """Whole seconds to tell a caller (never 0: "retry now" would be a lie)."""
    return max(1, math.ceil(wait))


class Health:
    """Tracks whether a store answers, logging each change of state exactly once."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.up = True

    def ok(self) -> None:
        if not self.up:
            self.up = True
            logger.warning("store %s is reachable again", self._store.describe())

    def failed(self, exc: BaseException) -> None:
        if self.up:
            self.up = False
            # One line per outage: what is affected, and that nobody needs to act to recover.
            logger.error(
                "store %s is unreachable (%s); quotas and single-use tokens fail closed, "
                "revocations are served from the cache; retrying automatically",
                self._store.describe(),
                getattr(exc, "reason", None) or type(exc).__name__,
            )


_HEALTH: weakref.WeakKeyDictionary[Store, Health] = weakref.WeakKeyDictionary()


def health_of(store: Store) -> Health:
    """The one ``Health`` of a store in this process (so each change is logged once)."""
    health = _HEALTH.get(store)
    if health is None:
        health = _HEALTH[store] = Health(store)
    return health


class EventHub:
    """In-process event channels: every subscriber gets its own bounded queue.

    A subscriber that falls more than ``EVENT_QUEUE`` items behind loses the oldest ones
    rather than growing memory; the publisher never waits.
    """

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[bytes]]] = {}

    async def publish(self, channel: str, data: bytes) -> None:
        self.deliver(check_channel(channel), data)

    def deliver(self, channel: str, data: bytes) -> None:
        for queue in tuple(self._subscribers.get(channel, ())):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(data)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        check_channel(channel)
        queue: asyncio.Queue[bytes] = asyncio.Queue(EVENT_QUEUE)
        self._subscribers.setdefault(channel, set()).add(queue)
        try:
            yield _drain(queue)
        finally:
            subscribers = self._subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[channel]


async def _drain(queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    while True:
        yield await queue.get()
