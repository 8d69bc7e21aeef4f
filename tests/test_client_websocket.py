"""Our ``Client`` and ``AsyncClient`` over ``ws://``: calls, batches, notifications and
subscriptions against the real engine; strict checks against a hostile WebSocket server."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve
from ws_support import running_app

sys.path.insert(0, str(Path(__file__).parent / "apps"))
import ws_app
from ws_app import token

from safe_rpc import (
    AsyncClient,
    Client,
    InternalError,
    InvalidResponse,
    MethodNotFound,
    SlowConsumer,
    TransportError,
    Unauthenticated,
)


@pytest.fixture(scope="module")
def ws_url() -> Iterator[str]:
    with running_app(ws_app.rpc) as (_, port):
        yield f"ws://127.0.0.1:{port}/"


def test_sync_client_calls_batches_notifications(ws_url: str) -> None:
    """Calls, dotted names, a batch and a notification on one connection."""
    with Client(ws_url, token=token()) as c:
        assert c.add(2, 3) == 5
        assert c.call("whoami") == "alice via websocket"
        c.notify("add", 1, 1)
        with c.batch() as b:
            f1, f2 = b.add(1, 2), b.slow(0.01)
        assert f1.result() == 3
        assert isinstance(f2.result(), int)
        with pytest.raises(MethodNotFound):
            c.no.such.method()
        assert c.add(4, 4) == 8  # the connection survived all of that


def test_sync_client_without_token_is_refused(ws_url: str) -> None:
    """No token: the server wants rpc.authenticate first and closes; the client raises."""
    with Client(ws_url) as c, pytest.raises((Unauthenticated, TransportError)):
        c.add(1, 2)


def test_sync_subscription_iterates_and_unsubscribes(ws_url: str) -> None:
    """``with c.subscribe(...) as sub: for item in sub`` and unsubscribe on exit."""
    with Client(ws_url, token=token()) as c:
        with c.subscribe("countdown", 3) as sub:
            assert list(sub) == [3, 2, 1]
        with c.subscribe("ticker", symbol="EURUSD", every=0.01) as sub:
            prices = [next(sub) for _ in range(5)]
            assert sub.id is not None
        assert [p["symbol"] for p in prices] == ["EURUSD"] * 5
        assert c.call("rpc.unsubscribe", sub.id) is False  # already gone on the server
        assert c.add(1, 1) == 2


def test_sync_client_queue_is_bounded(ws_url: str) -> None:
    """A client-side queue of 4 overflows on a burst: SlowConsumer, then calls go on."""
    with Client(ws_url, token=token()) as c:
        with c.subscribe("burst", 10, 50, queue=4) as sub:
            c.add(1, 1)  # reading the answer reads the burst into the small queue
            with pytest.raises(SlowConsumer):
                list(sub)
        assert c.add(2, 2) == 4


def test_async_client_concurrent_calls_and_subscriptions(ws_url: str) -> None:
    """Sixteen concurrent calls and two subscriptions on one async connection."""

    async def main() -> None:
        async with AsyncClient(ws_url, token=token()) as c:
            results = await asyncio.gather(*(c.add(i, i) for i in range(16)))
            assert results == [2 * i for i in range(16)]
            async with c.subscribe("countdown", 2) as a, c.subscribe("countdown", 3) as b:
                assert [x async for x in a] == [2, 1]
                assert [x async for x in b] == [3, 2, 1]
            async with c.batch() as batch:
                f = batch.add(5, 5)
            assert f.result() == 10
            await c.notify("add", 1, 2)
            async with c.subscribe("broken") as s:
                assert await s.__anext__() == 1
                with pytest.raises(InternalError):
                    await s.__anext__()

    asyncio.run(main())


def test_subscribe_needs_a_websocket_url() -> None:
    with Client("http://127.0.0.1:1/") as c, pytest.raises(TypeError):
        c.subscribe("ticker")


# -- a hostile WebSocket server -----------------------------------------------------------------


def hostile(answer: Any) -> Iterator[str]:
    """A WebSocket server that answers every message with ``answer(request)``."""

    def handler(ws: ServerConnection) -> None:
        for message in ws:
            request = json.loads(message)
            for out in answer(request):
                if isinstance(out, bytes):
                    ws.send(out)
                else:
                    ws.send(out if isinstance(out, str) else json.dumps(out))

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
        server.shutdown()


@pytest.mark.parametrize(
    "reply",
    [
        lambda r: [{"jsonrpc": "2.0", "result": 1, "id": r["id"] + 1}],  # wrong id
        lambda r: [b"binary"],
        lambda r: ['{"jsonrpc":"2.0","result":1,"id":1,"id":1}'],  # duplicate member
        lambda r: [{"jsonrpc": "2.0", "method": "evil", "params": {}}],  # foreign notification
        lambda r: [{"jsonrpc": "2.0", "result": 1, "error": {}, "id": r["id"]}],
    ],
)
def test_client_strict_over_websocket(reply: Any) -> None:
    """Malformed answers raise InvalidResponse (never a silent wrong result)."""
    for url in hostile(reply):
        with Client(url, timeout=5) as c, pytest.raises(InvalidResponse):
            c.add(1, 2)


def test_client_refuses_a_forged_subscription_id() -> None:
    """A subscribe answer that is not a string id is refused."""

    def reply(request: dict[str, Any]) -> list[Any]:
        return [{"jsonrpc": "2.0", "result": 5, "id": request["id"]}]

    for url in hostile(reply):
        with Client(url, timeout=5) as c, pytest.raises(InvalidResponse):
            c.subscribe("ticker").__enter__()
