"""``Client`` and ``AsyncClient`` subscriptions over ``tcp://``: the same API as over
WebSocket, on framed TCP (items interleaved with answers, the client-side queue bound,
a quiet subscription's timeout leaving the connection usable, events)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tcp_support import running_tcp

sys.path.insert(0, str(Path(__file__).parent / "apps"))
import ws_app
from ws_app import token

from safe_rpc import AsyncClient, Client, InternalError, SlowConsumer


@pytest.fixture(scope="module")
def tcp_url() -> Iterator[str]:
    with running_tcp(ws_app.rpc) as (_, port):
        yield f"tcp://127.0.0.1:{port}"


def test_sync_subscription_over_tcp_with_calls_in_between(tcp_url: str) -> None:
    """Items and answers share the connection: each goes where it belongs."""
    with Client(tcp_url, token=token()) as c:
        assert c.add(1, 2) == 3  # the plain path before any subscription
        with c.subscribe("countdown", 3) as sub:
            assert list(sub) == [3, 2, 1]
        with c.subscribe("ticker", symbol="EURUSD", every=0.01) as sub:
            first = next(sub)
            for i in range(5):  # items keep arriving while these calls wait for answers
                assert c.add(i, i) == 2 * i
            later = [next(sub) for _ in range(3)]
            assert sub.id is not None
        assert first["symbol"] == "EURUSD"
        assert [p["price"] for p in later] == sorted(p["price"] for p in later)
        assert c.call("rpc.unsubscribe", sub.id) is False  # already gone on the server
        assert c.add(2, 2) == 4


def test_sync_queue_bound_and_quiet_timeout_over_tcp(tcp_url: str) -> None:
    """A client queue of 4 overflows on a burst: SlowConsumer; a quiet subscription's
    ``next(timeout)`` raises TimeoutError and the connection still serves."""
    with Client(tcp_url, token=token()) as c:
        with c.subscribe("burst", 10, 50, queue=4) as sub:
            c.add(1, 1)  # reading the answer reads the burst into the small queue
            with pytest.raises(SlowConsumer):
                list(sub)
        with c.subscribe("news", topic="quiet") as sub:
            with pytest.raises(TimeoutError):
                sub.next(timeout=0.2)
            assert c.announce("quiet", "now") is True
            assert sub.next(timeout=10) == "now"
        assert c.add(2, 2) == 4


def test_async_subscriptions_over_tcp(tcp_url: str) -> None:
    """Concurrent calls and two subscriptions on one async TCP connection; a failing
    subscription ends with the rebuilt error."""

    async def main() -> None:
        async with AsyncClient(tcp_url, token=token()) as c:
            results = await asyncio.gather(*(c.add(i, i) for i in range(16)))
            assert results == [2 * i for i in range(16)]
            async with c.subscribe("countdown", 2) as a, c.subscribe("countdown", 3) as b:
                assert [x async for x in a] == [2, 1]
                assert [x async for x in b] == [3, 2, 1]
            async with c.subscribe("ticker", symbol="X", every=0.01) as t:
                assert (await t.__anext__())["symbol"] == "X"
                assert await asyncio.gather(*(c.add(i, 1) for i in range(4))) == [1, 2, 3, 4]
                assert (await t.__anext__())["symbol"] == "X"
            async with c.subscribe("broken") as s:
                assert await s.__anext__() == 1
                with pytest.raises(InternalError):
                    await s.__anext__()
            assert await c.add(5, 5) == 10

    asyncio.run(main())
