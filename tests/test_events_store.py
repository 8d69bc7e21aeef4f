"""Events across processes: on a ``RedisStore``, ``rpc.publish`` and ``ctx.events`` go
through Redis pub/sub, so an item published by one server reaches the WebSocket
subscribers of another (each with its own Redis connection and event loop, as two
processes have). Memory and SQLite stores keep the in-process bus."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from redis_support import RedisServer
from ws_support import running_app

from safe_rpc import Client, Context, MemoryStore, RedisStore, RPCServer, SQLiteStore
from safe_rpc._server.events import InProcessEventBus, StoreEventBus


def _news_server(store: RedisStore) -> RPCServer:
    rpc = RPCServer(store=store)

    @rpc.subscription(public=True)
    async def news(ctx: Context, topic: str) -> AsyncIterator[dict[str, str]]:
        async for item in ctx.events(f"news.{topic}"):
            yield item

    @rpc.method(public=True)
    def ping() -> str:
        return "pong"

    return rpc


def test_an_item_published_on_one_server_reaches_a_websocket_subscriber_of_another(
    redis_server: RedisServer,
) -> None:
    prefix = f"t{secrets.token_hex(4)}:"
    serving = _news_server(RedisStore(redis_server.url, prefix=prefix, timeout=2.0))
    other = RPCServer(store=RedisStore(redis_server.url, prefix=prefix, timeout=2.0))
    stranger = RPCServer(store=RedisStore(redis_server.url, prefix="x" + prefix, timeout=2.0))
    assert isinstance(serving.event_bus, StoreEventBus)

    async def publish_until(received: list[object], deadline: float) -> None:
        # Redis SUBSCRIBE takes effect a moment after the call answered: publish until the
        # subscriber has one (what was published before it listened is not replayed).
        n = 0
        while not received and time.monotonic() < deadline:
            await stranger.publish("news.rates", {"text": "other service"})
            await other.publish("news.rates", {"text": f"cut {n}"})
            n += 1
            await asyncio.sleep(0.05)
        await other.aclose()
        await stranger.aclose()

    with running_app(serving) as (_, port), Client(f"ws://127.0.0.1:{port}/") as client:
        with client.subscribe("news", topic="rates") as subscription:
            received: list[object] = []
            publisher = threading.Thread(
                target=asyncio.run, args=(publish_until(received, time.monotonic() + 20),)
            )
            publisher.start()
            try:
                item = subscription.next(timeout=20)
                received.append(item)
            finally:
                received.append(None)
                publisher.join(30)
            assert isinstance(item, dict)
            assert item["text"].startswith("cut ")
        assert client.ping() == "pong"  # the connection still serves


def test_memory_and_sqlite_stores_keep_the_in_process_bus(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    assert isinstance(RPCServer().event_bus, InProcessEventBus)
    assert isinstance(RPCServer(store=MemoryStore()).event_bus, InProcessEventBus)
    sqlite = SQLiteStore(tmp_path / "state.db")
    rpc = RPCServer(store=sqlite)
    assert isinstance(rpc.event_bus, InProcessEventBus)
    redis = RedisStore(redis_server.url, prefix=f"t{secrets.token_hex(4)}:")
    rpc.use_store(redis)  # what `safe-rpc serve --store redis://...` does
    assert isinstance(rpc.event_bus, StoreEventBus)
    custom = InProcessEventBus()

    class Mine:
        async def publish(self, channel: str, data: bytes) -> None:
            await custom.publish(channel, data)

        def subscribe(self, channel: str) -> AsyncIterator[bytes]:
            return custom.subscribe(channel)

    mine = Mine()
    rpc.event_bus = mine
    rpc.use_store(MemoryStore())
    assert rpc.event_bus is mine  # a bus the user set is kept
    redis.close()
    sqlite.close()  # every handle a test opens is closed (Python 3.13 warns on leaks)
