"""The in-process event bus behind ``rpc.publish`` / ``ctx.events`` (the contract any
``EventBus`` must keep: bytes in, the same bytes out to every current listener)."""

from __future__ import annotations

import asyncio

import pytest

from safe_rpc import RPCServer, SlowConsumer
from safe_rpc._server.events import LISTENER_QUEUE, InProcessEventBus, check_channel


def test_every_listener_gets_every_message_in_order() -> None:
    async def main() -> None:
        bus = InProcessEventBus()
        a, b = bus.subscribe("c"), bus.subscribe("c")
        first_a, first_b = asyncio.ensure_future(anext(a)), asyncio.ensure_future(anext(b))
        await asyncio.sleep(0)  # both are listening now
        await bus.publish("c", b"1")
        await bus.publish("other", b"x")
        await bus.publish("c", b"2")
        assert [await first_a, await anext(a)] == [b"1", b"2"]
        assert [await first_b, await anext(b)] == [b"1", b"2"]
        await a.aclose()
        await b.aclose()
        assert not bus._listeners  # nothing kept for listeners that left

    asyncio.run(main())


def test_a_listener_that_falls_behind_is_ended_not_buffered() -> None:
    async def main() -> None:
        bus = InProcessEventBus()
        listener = bus.subscribe("c")
        waiting = asyncio.ensure_future(anext(listener))
        await asyncio.sleep(0)
        for i in range(LISTENER_QUEUE + 10):
            await bus.publish("c", str(i).encode())
        assert await waiting == b"0"

        async def drain() -> None:
            while True:
                await anext(listener)

        with pytest.raises(SlowConsumer):
            await drain()

    asyncio.run(main())


def test_publish_encodes_strictly_and_names_are_checked() -> None:
    rpc = RPCServer()

    async def main() -> None:
        events = rpc.event_source("prices.EURUSD")
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        await rpc.publish("prices.EURUSD", {"bid": 1.5, "tags": ["a"]})
        assert await first == {"bid": 1.5, "tags": ["a"]}
        with pytest.raises(ValueError, match=r"NaN|finite|JSON|nan"):
            await rpc.publish("prices.EURUSD", float("nan"))

    asyncio.run(main())
    for bad in ("", "a b", "../x", "x" * 200, "_private"):
        with pytest.raises(ValueError, match="channel name"):
            check_channel(bad)
