"""Subscriptions on the client: the bounded queue of one (``Inbox``) and the routing of what
a stream transport receives (``Router``), shared by WebSocket and framed TCP. No I/O
library here: ``_clients`` imports it with ``import safe_rpc``."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final

from .._core.errors import InvalidResponse, SlowConsumer
from .._core.json import JSONError
from .._core.limits import CLIENT_JSON

__all__ = ["Inbox", "Router"]

_SUBSCRIPTION: Final = "rpc.subscription"
_ITEM_KEYS: Final = (frozenset({"subscription", "result"}), frozenset({"subscription", "end"}))


class Inbox:
    """The bounded queue of one subscription on the client."""

    __slots__ = ("closed", "error", "id", "items", "limit", "wakeup")

    def __init__(self, limit: int) -> None:
        self.id: str | None = None
        self.limit = limit
        self.items: deque[Any] = deque()
        self.error: BaseException | None = None
        self.closed = False  # ended by the server, failed, or unsubscribed
        self.wakeup: asyncio.Event | None = None

    def put(self, params: dict[str, Any], rebuild: Any) -> None:
        if self.closed:
            return
        if "result" in params:
            if len(self.items) >= self.limit:
                self.fail(SlowConsumer(), drop=True)
                return
            self.items.append(params["result"])
        elif "end" in params:
            self.closed = True
        else:
            self.fail(rebuild(params["error"]))
        self._wake()

    def fail(self, error: BaseException, *, drop: bool = False) -> None:
        """End with ``error``, raised once the items already received were taken (all of
        them dropped with ``drop``)."""
        if not self.closed:
            self.error = error
            self.closed = True
        if drop:
            self.items.clear()
        self._wake()

    async def next_async(self) -> Any:
        """The next item, waiting for the reader task to put one; StopAsyncIteration at
        the end, or the error the subscription ended with."""
        while not self.items:
            if self.closed:
                if self.error is not None:
                    raise self.error
                raise StopAsyncIteration
            self.wakeup = self.wakeup or asyncio.Event()
            self.wakeup.clear()
            await self.wakeup.wait()
        return self.items.popleft()

    def _wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup.set()


class Router:
    """Sans-I/O routing of what a stream transport (WebSocket, framed TCP) receives: answers
    to the call that is waiting for them (by request id), ``rpc.subscription`` items to the
    inbox of their subscription. Every message is checked as strictly as any answer: under
    the size cap, strict JSON, and a notification must be exactly the server's item shape.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.route: dict[int, int] = {}  # request id -> key of the message it is in
        self.streams: dict[str, Inbox] = {}
        self.opening: dict[int, Inbox] = {}  # key of a subscribe call -> its inbox
        #: A subscription was opened on this connection: from then on every message is
        #: routed (a late item of a closed subscription must not pass for an answer).
        self.used = False

    def expect(self, data: bytes, key: int, inbox: Inbox | None = None) -> None:
        value = CLIENT_JSON.loads(data)  # our own encoding: always valid
        for entry in value if type(value) is list else [value]:
            if "id" in entry:
                self.route[entry["id"]] = key
        if inbox is not None:
            self.opening[key] = inbox
            self.used = True

    def forget(self, key: int) -> None:
        self.opening.pop(key, None)
        for request_id in [r for r, k in self.route.items() if k == key]:
            del self.route[request_id]

    def parse(self, raw: bytes) -> Any:
        if len(raw) > self.cap:
            raise InvalidResponse("response larger than max_response_bytes")
        try:
            return CLIENT_JSON.loads(raw)
        except JSONError:
            raise InvalidResponse("response is not strict JSON") from None

    def feed(self, raw: bytes, rebuild: Any) -> int | None:
        """The key of the call ``raw`` answers, or None when it was an item.

        Raises:
            InvalidResponse: oversized, not strict JSON, or an answer to nothing.
        """
        value = self.parse(raw)
        if self._take_item(value, rebuild):
            return None
        key = self._answered(value)
        if key is not None:
            return key
        if len(self.route) and len(set(self.route.values())) == 1:
            return next(iter(self.route.values()))  # id null (a parse error): the only caller
        raise InvalidResponse("a response matches no call in flight")

    def route_item(self, raw: bytes, rebuild: Any) -> bool:
        """For a transport that matches answers itself: True when ``raw`` was an item (now
        in its inbox); an answer to a subscribe call registers the subscription's id."""
        value = self.parse(raw)
        if self._take_item(value, rebuild):
            return True
        self._answered(value)
        return False

    def _answered(self, value: Any) -> int | None:
        for entry in value if type(value) is list else [value]:
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
        return None

    def _take_item(self, value: Any, rebuild: Any) -> bool:
        if type(value) is not dict or "method" not in value:
            return False
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
        if inbox is not None:  # None: unsubscribed meanwhile, late items are dropped
            inbox.put(params, rebuild)
            if inbox.closed:
                del self.streams[params["subscription"]]
        return True

    def drop(self, inbox: Inbox) -> None:
        if inbox.id is not None:
            self.streams.pop(inbox.id, None)
        inbox.closed = True

    def fail_all(self, error: BaseException) -> None:
        for inbox in [*self.streams.values(), *self.opening.values()]:
            inbox.fail(error)
        self.streams.clear()
        self.opening.clear()
