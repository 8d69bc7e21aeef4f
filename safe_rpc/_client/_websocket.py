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
from typing import Any

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as sync_connect

from .._core.errors import InvalidResponse, TransportError
from ._inbox import Inbox, Router
from ._transports import _trace_headers

__all__ = ["AsyncWSTransport", "Inbox", "WSTransport"]


def _text(message: str | bytes) -> bytes:
    if not isinstance(message, str):
        raise InvalidResponse("the server sent a binary WebSocket message")
    return message.encode("utf-8", "surrogatepass")


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
        self._router = Router(cap)
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
                raw = _text(message)
                key = self._router.feed(raw, self.rebuild)
                future = self._pending.get(key) if key is not None else None
                if future is not None and not future.done():
                    future.set_result(raw)
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
        return await inbox.next_async()

    def drop(self, inbox: Inbox) -> None:
        self._router.drop(inbox)

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
        self._router = Router(cap)
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
                raw = _text(ws.recv(timeout=max(0.0, deadline - time.monotonic())))
                if self._router.feed(raw, self.rebuild) == key:
                    return raw
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
                raw = _text(self._ws.recv(timeout=wait))
                if self._router.feed(raw, self.rebuild) is not None:
                    raise InvalidResponse("an answer arrived with no call in flight")
            except TimeoutError:
                raise
            except InvalidResponse as exc:
                self._fail(exc)
            except (OSError, WebSocketException) as exc:
                self._fail(_failed(exc))
        return inbox.items.popleft()

    def drop(self, inbox: Inbox) -> None:
        self._router.drop(inbox)

    def _fail(self, error: BaseException) -> None:
        self._router.fail_all(error)
        self.close()

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
