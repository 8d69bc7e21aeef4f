"""WebSocket client transports (``ws://``, ``wss://``) and subscriptions, on the
``websockets`` library.

One connection per client. Answers are routed to their callers by id (several calls may
be in flight on ``AsyncClient``); ``rpc.subscription`` notifications go to the inbox of
their subscription, a bounded queue: a consumer that falls ``queue`` items behind gets
``SlowConsumer`` from its iterator and the subscription is cancelled. Every message is
checked as strictly as on the other transports: text only, under the size cap, strict
JSON, and a notification must be exactly the server's ``rpc.subscription`` shape.

Reconnecting is the caller's decision: after ``TransportError`` the next call opens a new
connection, and subscriptions of the old one are gone (subscribe again).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
import time
from typing import Any, Final

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as sync_connect

from .._core.errors import InvalidResponse, TransportError
from .._core.json import JSONError, StrictJSON
from ._inbox import Inbox
from ._transports import _trace_headers

__all__ = ["AsyncWSTransport", "Inbox", "WSTransport"]

_JSON: Final = StrictJSON(max_depth=64, max_object_members=10_000, max_array_items=100_000)
_SUBSCRIPTION: Final = "rpc.subscription"
_ITEM_KEYS: Final = (frozenset({"subscription", "result"}), frozenset({"subscription", "end"}))


class _Router:
    """Sans-I/O routing of incoming messages: answers by request id, items by stream id."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.route: dict[int, int] = {}  # request id -> key of the message it is in
        self.streams: dict[str, Inbox] = {}
        self.opening: dict[int, Inbox] = {}  # request id of a subscribe call -> its inbox

    def expect(self, data: bytes, key: int, inbox: Inbox | None = None) -> None:
        value = _JSON.loads(data)  # our own encoding: always valid
        for entry in value if type(value) is list else [value]:
            if "id" in entry:
                self.route[entry["id"]] = key
        if inbox is not None:
            self.opening[key] = inbox

    def forget(self, key: int) -> None:
        self.opening.pop(key, None)
        for request_id in [r for r, k in self.route.items() if k == key]:
            del self.route[request_id]

    def feed(self, message: str | bytes, rebuild: Any) -> int | None:
        """The key of the call ``message`` answers, or None when it was an item.

        Raises:
            InvalidResponse: binary, oversized, not strict JSON, or an answer to nothing.
        """
        if not isinstance(message, str):
            raise InvalidResponse("the server sent a binary WebSocket message")
        raw = message.encode("utf-8", "surrogatepass")
        if len(raw) > self.cap:
            raise InvalidResponse("response larger than max_response_bytes")
        try:
            value = _JSON.loads(raw)
        except JSONError:
            raise InvalidResponse("response is not strict JSON") from None
        if type(value) is dict and "method" in value:
            self._item(value, rebuild)
            return None
        entries = value if type(value) is list else [value]
        for entry in entries:
            request_id = entry.get("id") if type(entry) is dict else None
            if type(request_id) is int and request_id in self.route:
                key = self.route[request_id]
                inbox = self.opening.pop(key, None)
                result = entry.get("result")
                if inbox is not None and type(result) is str:
                    # Registered before the caller resumes: items that follow the answer at
                    # once land in its inbox, not on the floor.
                    inbox.id = result
                    self.streams[result] = inbox
                return key
        if len(self.route) and len(set(self.route.values())) == 1:
            return next(iter(self.route.values()))  # id null (a parse error): the only caller
        raise InvalidResponse("a response matches no call in flight")

    def _item(self, value: dict[str, Any], rebuild: Any) -> None:
        params = value.get("params")
        if (
            value.keys() != {"jsonrpc", "method", "params"}
            or value["jsonrpc"] != "2.0"
            or value["method"] != _SUBSCRIPTION
            or type(params) is not dict
            or type(params.get("subscription")) is not str
            or (params.keys() not in _ITEM_KEYS and params.keys() != {"subscription", "error"})
            or ("end" in params and params["end"] is not True)
        ):
            raise InvalidResponse("a notification that is not an rpc.subscription item")
        inbox = self.streams.get(params["subscription"])
        if inbox is None:
            return  # unsubscribed meanwhile: late items are dropped
        inbox.put(params, rebuild)
        if inbox.closed:
            del self.streams[params["subscription"]]

    def fail_all(self, error: BaseException) -> None:
        for inbox in [*self.streams.values(), *self.opening.values()]:
            inbox.fail(error)
        self.streams.clear()
        self.opening.clear()


def _settings(url: str, token: str | None, ssl: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # The caller's trace (W3C traceparent, when OpenTelemetry is on) goes with the
    # handshake: the server's records of every call on this connection continue it.
    headers.update(_trace_headers() or {})
    options: dict[str, Any] = {
        "compression": None,  # no permessage-deflate: nothing to inflate beyond the cap
        "user_agent_header": None,
        "additional_headers": headers or None,
    }
    if url.lower().startswith("wss://"):
        options["ssl"] = ssl or ssl_module.create_default_context()
    return options


def _failed(exc: BaseException) -> TransportError:
    return TransportError(f"WebSocket transport failed: {type(exc).__name__}")


class AsyncWSTransport:
    """Async WebSocket: one connection, concurrent calls matched by id, subscriptions."""

    def __init__(self, url: str, *, token: str | None, timeout: float, cap: int, ssl: Any) -> None:
        self.url = url
        self.timeout = timeout
        self.cap = cap
        self._options = _settings(url, token, ssl)
        self._ws: AsyncConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._router = _Router(cap)
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._connecting = asyncio.Lock()
        self.rebuild: Any = None  # set by the client: error object -> exception

    async def send(
        self, data: bytes, *, expect: bool, key: int | None, inbox: Inbox | None = None
    ) -> bytes | None:
        try:
            async with asyncio.timeout(self.timeout):
                ws = await self._connected()
                future: asyncio.Future[bytes] | None = None
                if expect and key is not None:
                    future = asyncio.get_running_loop().create_future()
                    self._pending[key] = future
                    self._router.expect(data, key, inbox)
                await ws.send(data.decode())
                return await future if future is not None else None
        except TimeoutError:
            raise TransportError("the call timed out") from None
        except (OSError, WebSocketException) as exc:
            await self.close()
            raise _failed(exc) from None
        finally:
            if key is not None:
                self._pending.pop(key, None)
                self._router.forget(key)

    async def _connected(self) -> AsyncConnection:
        async with self._connecting:
            if self._ws is not None:
                return self._ws
            self._ws = await async_connect(self.url, max_size=self.cap, **self._options)
            self._reader = asyncio.create_task(self._read_loop(self._ws))
            return self._ws

    async def _read_loop(self, ws: AsyncConnection) -> None:
        failure: BaseException = TransportError("the server closed the connection")
        try:
            async for message in ws:
                raw = message if isinstance(message, str) else None
                key = self._router.feed(message, self.rebuild)
                future = self._pending.get(key) if key is not None else None
                if future is not None and not future.done() and raw is not None:
                    future.set_result(raw.encode("utf-8", "surrogatepass"))
        except InvalidResponse as exc:
            failure = exc
        except (OSError, WebSocketException):
            pass
        self._ws = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(failure)
        self._router.fail_all(failure)
        with contextlib.suppress(Exception):
            await ws.close()

    async def next_item(self, inbox: Inbox) -> Any:
        """The next item of ``inbox``; StopAsyncIteration at its end."""
        while not inbox.items:
            if inbox.closed:
                if inbox.error is not None:
                    raise inbox.error
                raise StopAsyncIteration
            inbox.wakeup = inbox.wakeup or asyncio.Event()
            inbox.wakeup.clear()
            await inbox.wakeup.wait()
        return inbox.items.popleft()

    def drop(self, inbox: Inbox) -> None:
        if inbox.id is not None:
            self._router.streams.pop(inbox.id, None)
        inbox.closed = True

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
            self._reader = None


class WSTransport:
    """Sync WebSocket: one connection, one call at a time; items read meanwhile are queued."""

    def __init__(self, url: str, *, token: str | None, timeout: float, cap: int, ssl: Any) -> None:
        self.url = url
        self.timeout = timeout
        self.cap = cap
        self._options = _settings(url, token, ssl)
        self._ws: SyncConnection | None = None
        self._router = _Router(cap)
        self.rebuild: Any = None

    def send(
        self, data: bytes, *, expect: bool, key: int | None, inbox: Inbox | None = None
    ) -> bytes | None:
        deadline = time.monotonic() + self.timeout
        try:
            ws = self._connected()
            if expect and key is not None:
                self._router.expect(data, key, inbox)
            ws.send(data.decode())
            if not expect or key is None:
                return None
            while True:
                message = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
                if self._router.feed(message, self.rebuild) == key:
                    return str(message).encode("utf-8", "surrogatepass")
        except TimeoutError:
            self.close()
            raise TransportError("the call timed out") from None
        except InvalidResponse as exc:
            self._fail(exc)
            raise
        except (OSError, WebSocketException) as exc:
            self._fail(_failed(exc))
            raise _failed(exc) from None
        finally:
            if key is not None:
                self._router.forget(key)

    def _connected(self) -> SyncConnection:
        if self._ws is None:
            # Entered as a context manager, the way websockets >= 17 wants it used; close()
            # below ends it.
            self._ws = sync_connect(
                self.url, max_size=self.cap, open_timeout=self.timeout, **self._options
            ).__enter__()
        return self._ws

    def next_item(self, inbox: Inbox, timeout: float | None) -> Any:
        """The next item of ``inbox`` (reading the connection as needed); StopIteration at
        its end; TimeoutError when ``timeout`` passes without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not inbox.items:
            if inbox.closed:
                if inbox.error is not None:
                    raise inbox.error
                raise StopIteration
            if self._ws is None:
                raise TransportError("the connection is closed")
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                message = self._ws.recv(timeout=wait)
                if self._router.feed(message, self.rebuild) is not None:
                    raise InvalidResponse("an answer arrived with no call in flight")
            except TimeoutError:
                raise
            except InvalidResponse as exc:
                self._fail(exc)
            except (OSError, WebSocketException) as exc:
                self._fail(_failed(exc))
        return inbox.items.popleft()

    def drop(self, inbox: Inbox) -> None:
        if inbox.id is not None:
            self._router.streams.pop(inbox.id, None)
        inbox.closed = True

    def _fail(self, error: BaseException) -> None:
        self._router.fail_all(error)
        self.close()

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
