"""Subscriptions over framed TCP (``tcp://``, ``tls://``): the TCP transports, plus the
routing of ``rpc.subscription`` notification frames to their subscription's inbox, by the
same rules as over WebSocket (``_inbox.Router``).

Until a subscription is opened on a connection, calls take the plain TCP path unchanged;
from then on every frame is routed (an item that arrives while a call waits goes to its
inbox; a late item of a closed subscription is dropped, never taken for an answer).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .._core.errors import InvalidResponse, TransportError
from .._core.framing import HEADER, encode_frame
from ._inbox import Inbox, Router
from ._transports import (
    AsyncTCPTransport,
    TCPTransport,
    _Deadline,
    _not_a_frame,
    _recv_exactly,
)

__all__ = ["AsyncStreamTCPTransport", "StreamTCPTransport"]


class StreamTCPTransport(TCPTransport):
    """Sync framed TCP with subscriptions: one call at a time, items read meanwhile queued."""

    def _start(self) -> None:
        super()._start()
        self._router = Router(self.cap)
        self.rebuild: Any = None  # set by the client: error object -> exception

    def send(
        self, data: bytes, *, expect: bool, key: int | None, inbox: Inbox | None = None
    ) -> bytes | None:
        if inbox is None and not self._router.used:
            return super().send(data, expect=expect, key=key)
        deadline = _Deadline(self.timeout)
        try:
            sock = self._sock or self._connect(deadline)
            if expect and key is not None:
                self._router.expect(data, key, inbox)
            sock.settimeout(deadline.left())
            sock.sendall(encode_frame(data))
            if not expect or key is None:
                return None
            while True:
                raw = self._read_frame(sock, deadline)
                if self._router.feed(raw, self.rebuild) == key:
                    return raw
        except TimeoutError:
            self._fail(TransportError("the call timed out"))
            raise TransportError("the call timed out") from None
        except InvalidResponse as exc:
            self._fail(exc)
            raise
        except (OSError, EOFError) as exc:
            error = TransportError(self._failure(exc))
            self._fail(error)
            raise error from None
        finally:
            if key is not None:
                self._router.forget(key)

    def next_item(self, inbox: Inbox, timeout: float | None) -> Any:
        """The next item of ``inbox`` (reading the connection as needed); StopIteration at
        its end; TimeoutError when ``timeout`` passes without one."""
        while not inbox.items:
            if inbox.closed:
                if inbox.error is not None:
                    raise inbox.error
                raise StopIteration
            if self._sock is None:
                raise TransportError("the connection is closed")
            try:
                raw = self._next_frame(self._sock, timeout)
                if self._router.feed(raw, self.rebuild) is not None:
                    raise InvalidResponse("an answer arrived with no call in flight")
            except TimeoutError:
                raise
            except InvalidResponse as exc:
                self._fail(exc)
            except (OSError, EOFError) as exc:
                self._fail(TransportError(self._failure(exc)))
        return inbox.items.popleft()

    def _next_frame(self, sock: Any, timeout: float | None) -> bytes:
        # Waiting for a frame to start may run out cleanly (TimeoutError, the stream intact);
        # once one started, the rest must come within one call's timeout.
        sock.settimeout(timeout)
        first = sock.recv(1)
        if not first:
            raise EOFError
        deadline = _Deadline(self.timeout)
        try:
            header = first + _recv_exactly(sock, HEADER - 1, deadline)
            length = int.from_bytes(header, "big")
            if not 0 < length <= self.cap:  # checked before anything is allocated for it
                raise _not_a_frame(header)
            return _recv_exactly(sock, length, deadline)
        except TimeoutError:
            raise EOFError from None  # a frame cut short: the connection is unusable

    def drop(self, inbox: Inbox) -> None:
        self._router.drop(inbox)

    def _fail(self, error: BaseException) -> None:
        self._router.fail_all(error)
        self.close()

    def close(self) -> None:
        super().close()
        self._router.used = False  # a new connection starts without subscriptions


class AsyncStreamTCPTransport(AsyncTCPTransport):
    """Async framed TCP with subscriptions: concurrent calls matched by id, items routed."""

    def _start(self) -> None:
        super()._start()
        self._router = Router(self.cap)
        self.rebuild: Any = None

    async def send(
        self, data: bytes, *, expect: bool, key: int | None, inbox: Inbox | None = None
    ) -> bytes | None:
        if inbox is not None and key is not None:
            self._router.expect(data, key, inbox)  # before the answer can arrive
        try:
            return await super().send(data, expect=expect, key=key)
        finally:
            if inbox is not None and key is not None:
                self._router.forget(key)

    def _is_item(self, raw: bytes) -> bool:
        return self._router.used and self._router.route_item(raw, self.rebuild)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            await super()._read_loop(reader)
        finally:
            self._router.fail_all(TransportError("the connection was closed"))
            self._router.used = False

    async def next_item(self, inbox: Inbox) -> Any:
        """The next item of ``inbox``; StopAsyncIteration at its end."""
        return await inbox.next_async()

    def drop(self, inbox: Inbox) -> None:
        self._router.drop(inbox)
