"""``Client`` and ``AsyncClient``: the safe replacement for the pickle proxy.

Both share ``ClientProtocol`` (request building, strict response checking, error
rebuilding); they differ only in how bytes move.
"""

from __future__ import annotations

import contextlib
import ssl as ssl_module
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

from .._core.errors import ConfigError, ErrorRegistry, InvalidResponse, RPCError
from .._core.limits import Limits
from .._core.protocol import DISCOVER_METHOD
from ._inbox import Inbox
from ._interface import AsyncTransport, Transport, TransportFactory
from ._protocol import Call, ClientProtocol, Outcome, make_params
from ._tcp_streams import AsyncStreamTCPTransport, StreamTCPTransport

__all__ = [
    "AsyncBatch",
    "AsyncClient",
    "AsyncSubscription",
    "BatchFuture",
    "Client",
    "Subscription",
    "SyncBatch",
]

#: The server's own response cap is the client's default: one number for both sides.
DEFAULT_MAX_RESPONSE: Final = Limits().max_response_bytes


def _http(url: str, **settings: Any) -> Transport:
    # The HTTP client stack (httpcore) is imported with the first HTTP client, not with
    # ``import safe_rpc``: a TCP-only program never loads it.
    from ._http import HTTPTransport

    return HTTPTransport(url, **settings)


def _async_http(url: str, **settings: Any) -> AsyncTransport:
    from ._http import AsyncHTTPTransport

    return AsyncHTTPTransport(url, **settings)


def _ws(url: str, **settings: Any) -> Transport:
    # The websockets library loads with the first ws:// client, as httpcore does for HTTP.
    from ._websocket import WSTransport

    return WSTransport(url, **settings)


def _async_ws(url: str, **settings: Any) -> AsyncTransport:
    from ._websocket import AsyncWSTransport

    return AsyncWSTransport(url, **settings)


# URL scheme -> transport; a new transport adds its schemes here.
_SYNC: Final[dict[str, TransportFactory[Transport]]] = {
    "http": _http,
    "https": _http,
    "tcp": StreamTCPTransport,
    "tls": StreamTCPTransport,
    "ws": _ws,
    "wss": _ws,
}
_ASYNC: Final[dict[str, TransportFactory[AsyncTransport]]] = {
    "http": _async_http,
    "https": _async_http,
    "tcp": AsyncStreamTCPTransport,
    "tls": AsyncStreamTCPTransport,
    "ws": _async_ws,
    "wss": _async_ws,
}
#: Items a subscription may hold on the client before it fails with SlowConsumer.
DEFAULT_SUBSCRIPTION_QUEUE: Final = 256


def _scheme(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SYNC:
        raise ConfigError(
            f"{url!r}: the URL must start with http://, https://, tcp://, tls://, ws:// or wss://"
        )
    return scheme


def _document(value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise InvalidResponse("rpc.discover did not answer an OpenRPC document (an object)")
    return value


def _result(outcomes: dict[int, Outcome], call: Call) -> Any:
    assert call.id is not None  # a request, not a notification
    return outcomes[call.id].unwrap()


class _Proxy:
    """``client.account.withdraw(amount=5)`` -> ``call("account.withdraw", amount=5)``."""

    __slots__ = ("_invoke", "_name")

    def __init__(self, name: str, invoke: Callable[[str, tuple[Any, ...], dict[str, Any]], Any]):
        self._name = name
        self._invoke = invoke

    def __getattr__(self, attr: str) -> _Proxy:
        if attr.startswith("_"):  # never forward dunder or private names
            raise AttributeError(attr)
        return _Proxy(f"{self._name}.{attr}", self._invoke)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._invoke(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._name!r}>"


class BatchFuture:
    """The eventual result of one call in a batch."""

    __slots__ = ("_outcome",)

    def __init__(self) -> None:
        self._outcome: Outcome | None = None

    def done(self) -> bool:
        return self._outcome is not None

    def result(self) -> Any:
        """The call's result, or raise its error. Only after the batch was sent."""
        if self._outcome is None:
            raise RuntimeError("the batch has not been sent yet (leave its `with` block first)")
        return self._outcome.unwrap()


class _BatchBuilder:
    def __init__(self, protocol: ClientProtocol) -> None:
        self._protocol = protocol
        self._calls: list[Call] = []
        self._futures: dict[int, BatchFuture] = {}

    def __getattr__(self, name: str) -> _Proxy:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Proxy(name, lambda method, args, kwargs: self.call(method, *args, **kwargs))

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> BatchFuture:
        call = self._protocol.call(method, make_params(args, kwargs))
        self._calls.append(call)
        future = self._futures[call.id] = BatchFuture()  # type: ignore[index]
        return future

    def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        self._calls.append(self._protocol.call(method, make_params(args, kwargs), notify=True))

    def _message(self) -> tuple[bytes, bool, int | None]:
        ids = [c.id for c in self._calls if c.id is not None]
        return self._protocol.encode(self._calls, batch=True), bool(ids), min(ids, default=None)

    def _settle(self, raw: bytes | None) -> None:
        try:
            outcomes = self._protocol.decode(raw, self._calls, batch=True)
        except RPCError as error:  # the server refused the whole batch
            for future in self._futures.values():
                future._outcome = Outcome(error=error)
            raise
        for call_id, future in self._futures.items():
            future._outcome = outcomes[call_id]


class SyncBatch(_BatchBuilder):
    """Collects calls; sends them as one batch when the ``with`` block ends."""

    def __init__(self, protocol: ClientProtocol, transport: Transport) -> None:
        super().__init__(protocol)
        self._transport = transport

    def __enter__(self) -> SyncBatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> None:
        if kind is None and self._calls:
            data, expect, key = self._message()
            self._settle(self._transport.send(data, expect=expect, key=key))


class AsyncBatch(_BatchBuilder):
    """Collects calls; sends them as one batch when the ``async with`` block ends."""

    def __init__(self, protocol: ClientProtocol, transport: AsyncTransport) -> None:
        super().__init__(protocol)
        self._transport = transport

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *rest: Any) -> None:
        if kind is None and self._calls:
            data, expect, key = self._message()
            self._settle(await self._transport.send(data, expect=expect, key=key))


_T = TypeVar("_T", Transport, AsyncTransport)


class _ClientBase(Generic[_T]):
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE,
        errors: ErrorRegistry | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.url = url
        self._protocol = ClientProtocol(max_response_bytes=max_response_bytes, errors=errors)
        self._transport: _T = self._factory(_scheme(url))(
            url, token=token, timeout=timeout, cap=max_response_bytes, ssl=ssl
        )
        transport: Any = self._transport
        if hasattr(transport, "next_item"):  # a transport that carries subscriptions
            transport.rebuild = self._protocol.rebuild

    def _factory(self, scheme: str) -> TransportFactory[_T]:
        raise NotImplementedError

    def __getattr__(self, name: str) -> _Proxy:
        # Only names that are not attributes of the client reach here; private and dunder
        # names are never turned into remote calls (SR-02 from the client's side).
        if name.startswith("_"):
            raise AttributeError(name)
        return _Proxy(name, self._invoke)

    def _invoke(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.call(name, *args, **kwargs)

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _stream_transport(self) -> Any:
        if not hasattr(self._transport, "next_item"):
            raise TypeError("subscriptions need a ws://, wss://, tcp:// or tls:// URL")
        return self._transport

    def _single(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], notify: bool
    ) -> tuple[Call, bytes]:
        call = self._protocol.call(method, make_params(args, kwargs), notify=notify)
        return call, self._protocol.encode([call], batch=False)


class Client(_ClientBase[Transport]):
    """A synchronous JSON-RPC client over ``http``, ``https``, ``tcp`` or ``tls`` URLs.

    Example:
        ```python
        with Client("http://127.0.0.1:8000/", token=token, timeout=10.0) as c:
            c.add(2, 3)                        # 5
            c.account.withdraw(amount=5)       # dotted names
            with c.batch() as b:
                f = b.add(1, 2)
            f.result()                         # 3
        ```

    Raises (from calls):
        RPCError: the server's error, as the class registered for its code
            (``RemoteError`` for an unknown code).
        TransportError: I/O failure or timeout; ``InvalidResponse`` for a broken answer.
    """

    def _factory(self, scheme: str) -> TransportFactory[Transport]:
        return _SYNC[scheme]

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` with positional or named arguments; return its result."""
        call, data = self._single(method, args, kwargs, False)
        raw = self._transport.send(data, expect=True, key=call.id)
        return _result(self._protocol.decode(raw, [call], batch=False), call)

    def discover(self) -> dict[str, Any]:
        """The server's OpenRPC document, as this client's token is allowed to see it."""
        return _document(self.call(DISCOVER_METHOD))

    def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification: no answer is expected or read."""
        _, data = self._single(method, args, kwargs, True)
        self._transport.send(data, expect=False, key=None)

    def subscribe(
        self, method: str, /, *args: Any, queue: int = DEFAULT_SUBSCRIPTION_QUEUE, **kwargs: Any
    ) -> Subscription:
        """Open a subscription (``ws://``, ``wss://``, ``tcp://``, ``tls://``); use it as a
        context manager and iterate it:
        ``with c.subscribe("ticker", symbol="EURUSD") as sub: for p in sub: ...``.

        Leaving the block unsubscribes. ``queue`` bounds the items held on this side: a
        consumer that falls that far behind gets ``SlowConsumer``.
        """
        transport = self._stream_transport()
        return Subscription(self, transport, method, make_params(args, kwargs), queue)

    def batch(self) -> SyncBatch:
        """Collect calls and send them in one round trip (see the class example)."""
        return SyncBatch(self._protocol, self._transport)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(_ClientBase[AsyncTransport]):
    """The asyncio twin of ``Client``: same methods, awaited; ``aclose()`` to close.

    Over ``tcp``/``tls`` it keeps one connection and runs concurrent calls on it, matching
    answers to calls by id.

    Example:
        ```python
        async with AsyncClient("tcp://127.0.0.1:9000", token=token) as c:
            await c.add(2, 3)
        ```
    """

    def _factory(self, scheme: str) -> TransportFactory[AsyncTransport]:
        return _ASYNC[scheme]

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method``; return its result."""
        call, data = self._single(method, args, kwargs, False)
        raw = await self._transport.send(data, expect=True, key=call.id)
        return _result(self._protocol.decode(raw, [call], batch=False), call)

    async def discover(self) -> dict[str, Any]:
        """The server's OpenRPC document, as this client's token is allowed to see it."""
        return _document(await self.call(DISCOVER_METHOD))

    async def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification."""
        _, data = self._single(method, args, kwargs, True)
        await self._transport.send(data, expect=False, key=None)

    def subscribe(
        self, method: str, /, *args: Any, queue: int = DEFAULT_SUBSCRIPTION_QUEUE, **kwargs: Any
    ) -> AsyncSubscription:
        """Open a subscription (``ws://``, ``wss://``, ``tcp://``, ``tls://``):
        ``async with c.subscribe("ticker", symbol="EURUSD") as sub: async for p in sub: ...``.

        Leaving the block unsubscribes. ``queue`` bounds the items held on this side: a
        consumer that falls that far behind gets ``SlowConsumer``.
        """
        transport = self._stream_transport()
        return AsyncSubscription(self, transport, method, make_params(args, kwargs), queue)

    def batch(self) -> AsyncBatch:
        """``async with client.batch() as b: f = b.add(1, 2)`` -> one round trip."""
        return AsyncBatch(self._protocol, self._transport)

    async def aclose(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _SubscriptionBase:
    def __init__(
        self, client: _ClientBase[Any], transport: Any, method: str, params: Any, queue: int
    ) -> None:
        if queue < 1:
            raise ConfigError("queue must be at least 1")
        self._client = client
        self._transport = transport
        self._inbox = Inbox(queue)
        self._call = client._protocol.call(method, params)
        self._data = client._protocol.encode([self._call], batch=False)

    @property
    def id(self) -> str | None:
        """The server's id for this subscription (once open)."""
        return self._inbox.id

    def _opened(self, raw: bytes | None) -> None:
        subscription_id = _result(
            self._client._protocol.decode(raw, [self._call], batch=False), self._call
        )
        if type(subscription_id) is not str or self._inbox.id != subscription_id:
            raise InvalidResponse("a subscribe call must answer the subscription id")


class Subscription(_SubscriptionBase):
    """An open subscription on ``Client``: iterate it for items; leave its block to end it."""

    def __enter__(self) -> Subscription:
        self._opened(
            self._transport.send(self._data, expect=True, key=self._call.id, inbox=self._inbox)
        )
        return self

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Any:
        return self._transport.next_item(self._inbox, None)

    def next(self, timeout: float | None = None) -> Any:
        """The next item, waiting at most ``timeout`` seconds (TimeoutError past it)."""
        return self._transport.next_item(self._inbox, timeout)

    def __exit__(self, *exc: Any) -> None:
        still_open = not self._inbox.closed and self._inbox.id is not None
        self._transport.drop(self._inbox)
        if still_open:
            with contextlib.suppress(RPCError):
                self._client.call("rpc.unsubscribe", self._inbox.id)


class AsyncSubscription(_SubscriptionBase):
    """An open subscription on ``AsyncClient``: ``async for`` its items."""

    async def __aenter__(self) -> AsyncSubscription:
        raw = await self._transport.send(
            self._data, expect=True, key=self._call.id, inbox=self._inbox
        )
        self._opened(raw)
        return self

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Any:
        return await self._transport.next_item(self._inbox)

    async def __aexit__(self, *exc: Any) -> None:
        still_open = not self._inbox.closed and self._inbox.id is not None
        self._transport.drop(self._inbox)
        if still_open:
            with contextlib.suppress(RPCError):
                await self._client.call("rpc.unsubscribe", self._inbox.id)
