"""Event channels: ``await rpc.publish(channel, item)`` and ``ctx.events(channel)``.

Items cross the bus as JSON bytes (strict encoding on the way in, the strict parser on the
way out), so any bus that moves bytes can carry them: the in-process bus here, or a shared
store's pub/sub across processes and hosts. ``EventBus`` is the whole interface.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Final, Protocol

from pydantic_core import to_jsonable_python

from .._core.errors import SlowConsumer
from .._core.json import StrictJSON, dumps_strict
from .._store.base import Store
from .._store.redis import RedisStore

__all__ = [
    "EventBus",
    "InProcessEventBus",
    "StoreEventBus",
    "bus_for",
    "check_channel",
    "decode_events",
    "encode_event",
]

#: Channel names: dotted identifiers, as for methods (they may end up as store keys).
_CHANNEL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
#: Items one listener may have waiting before it is ended as a slow consumer.
LISTENER_QUEUE: Final = 256


class EventBus(Protocol):
    """Moves published bytes to every current listener of a channel."""

    async def publish(self, channel: str, data: bytes) -> None:
        """Deliver ``data`` to the listeners of ``channel`` (none: dropped)."""
        ...

    def subscribe(self, channel: str) -> AsyncIterator[bytes]:
        """The messages published on ``channel`` from now until the iterator is closed."""
        ...


def check_channel(channel: str) -> str:
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
        raise ValueError(
            "a channel name is 1-128 characters of letters, digits and _ . : - "
            "(starting with a letter or digit)"
        )
    return channel


def encode_event(item: Any) -> bytes:
    """Strict JSON for an item (pydantic models, dataclasses, datetimes work)."""
    return dumps_strict(to_jsonable_python(item))


async def decode_events(source: AsyncIterator[bytes], parser: StrictJSON) -> AsyncIterator[Any]:
    async for data in source:
        yield parser.loads(data)


class _Listener:
    __slots__ = ("overflowed", "queue")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(LISTENER_QUEUE)
        self.overflowed = False


class InProcessEventBus:
    """The bus for one process (one event loop): a bounded queue per listener.

    A listener more than ``LISTENER_QUEUE`` items behind is ended with ``SlowConsumer``
    rather than holding memory for it; publishers never wait.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, set[_Listener]] = {}

    async def publish(self, channel: str, data: bytes) -> None:
        for listener in self._listeners.get(channel, ()):
            try:
                listener.queue.put_nowait(data)
            except asyncio.QueueFull:
                listener.overflowed = True

    async def subscribe(self, channel: str) -> AsyncGenerator[bytes, None]:
        listener = _Listener()
        self._listeners.setdefault(channel, set()).add(listener)
        try:
            while True:
                if listener.overflowed:
                    raise SlowConsumer()
                yield await listener.queue.get()
        finally:
            listeners = self._listeners.get(channel)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[channel]


class StoreEventBus:
    """The bus over a store's pub/sub (``RedisStore``: every process on every host).

    Each listener is one subscription on the store; what a listener may be behind is
    bounded by the connection that reads it (``Limits.subscription_queue``). The store
    adds its key prefix to the channel, so two services on one Redis stay apart.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    async def publish(self, channel: str, data: bytes) -> None:
        await self.store.publish(channel, data)

    async def subscribe(self, channel: str) -> AsyncGenerator[bytes, None]:
        async with self.store.subscribe(channel) as items:
            async for data in items:
                yield data


def bus_for(store: Store) -> EventBus:
    """The default bus for a server on ``store``: Redis pub/sub for a ``RedisStore``; this
    process only otherwise (``MemoryStore``, and ``SQLiteStore``, which has no
    cross-process notification)."""
    return StoreEventBus(store) if isinstance(store, RedisStore) else InProcessEventBus()
