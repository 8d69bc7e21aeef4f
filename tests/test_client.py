"""Client and AsyncClient against real HTTP and TCP servers (issue 5, README: The clients)."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import Server, serve

from safe_rpc import (
    AsyncClient,
    Client,
    ConfigError,
    InvalidParams,
    RemoteError,
    TransportError,
    Unauthenticated,
)

sys.path.insert(0, str(Path(__file__).parent / "apps"))
import http_app

TOKEN = http_app.keyring.issue("alice", ["me"], ttl=3600)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve("http_app:rpc", "--tcp", "127.0.0.1:0") as running:
        yield running


@pytest.fixture(params=["http", "tcp"])
def url(request: pytest.FixtureRequest, server: Server) -> str:
    if request.param == "http":
        return server.url
    return f"tcp://127.0.0.1:{server.tcp_port}"


def test_every_call_form_sync(url: str) -> None:
    """Positional, named, dotted, call(), notify() and batch() all work."""
    with Client(url, token=TOKEN) as c:
        assert c.add(2, 3) == 5
        assert c.add(a=2, b=3) == 5
        assert c.call("add", 4, 5) == 9
        assert c.whoami() == f"alice via {'http' if url.startswith('http') else 'tcp'}"
        c.notify("add", 1, 1)
        with pytest.raises(http_app.Overdrawn) as info:
            c.bank.withdraw(amount=5)  # dotted name through attribute access
        assert info.value.data == http_app.Overdrawn.Data(balance=3)
        with c.batch() as b:
            first = b.add(1, 2)
            second = b.call("echo", "hi")
            bad = b.add("x", 1)
            b.notify("add", 0, 0)
        assert first.result() == 3
        assert second.result() == "hi"
        with pytest.raises(InvalidParams):
            bad.result()


def test_every_call_form_async(url: str) -> None:
    """The async client has the same forms, and runs concurrent calls on one connection."""

    async def main() -> None:
        async with AsyncClient(url, token=TOKEN) as c:
            assert await c.add(2, 3) == 5
            assert await c.call("add", a=1, b=1) == 2
            # Within the test server's caps (4 in flight, 12 connections).
            results = await asyncio.gather(*(c.add(i, i) for i in range(4)))
            assert results == [2 * i for i in range(4)]
            await c.notify("add", 1, 2)
            async with c.batch() as b:
                f = b.add(5, 5)
                g = b.echo("x")
            assert (f.result(), g.result()) == (10, "x")
            with pytest.raises(http_app.Overdrawn):
                await c.bank.withdraw(amount=1)

    asyncio.run(main())


def test_unknown_code_is_remote_error(url: str) -> None:
    """An error code the client does not know arrives as RemoteError with its data."""
    with Client(url, token=TOKEN) as c, pytest.raises(RemoteError) as info:
        c.mystery()
    assert info.value.code == 4242
    assert info.value.data == {"hint": "x"}
    assert info.value.message == "server-only error"


def test_timeout_is_transport_error(url: str) -> None:
    """A call slower than the client's timeout raises TransportError."""
    with Client(url, token=TOKEN, timeout=0.3) as c, pytest.raises(TransportError):
        c.slow(0.9)


def test_closed_port_is_transport_error() -> None:
    """Nothing listening: TransportError for both clients and both transports."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for url in (f"http://127.0.0.1:{port}/", f"tcp://127.0.0.1:{port}"):
        with Client(url) as c, pytest.raises(TransportError):
            c.add(1, 2)

        async def main(url: str = url) -> None:
            async with AsyncClient(url) as c:
                await c.add(1, 2)

        with pytest.raises(TransportError):
            asyncio.run(main())


def test_bad_token_raises_unauthenticated(url: str) -> None:
    """A bad token surfaces as Unauthenticated (401 over HTTP, -32001 frame over TCP)."""
    with Client(url, token="bad") as c, pytest.raises(Unauthenticated):
        c.whoami()


def test_client_argument_errors() -> None:
    """Mixing positional and named arguments, or a bad URL, fails before any I/O."""
    with pytest.raises(ValueError, match="URL"):
        Client("ftp://x")
    with pytest.raises(ValueError, match="port"):
        Client("tcp://127.0.0.1")
    for url in ("tcp://127.0.0.1:99999", "tls://127.0.0.1:port"):  # urllib's ValueError
        with pytest.raises(ConfigError, match="port"):
            Client(url)
    with Client("http://127.0.0.1:9/") as c:
        with pytest.raises(TypeError, match="position or by name"):
            c.add(1, b=2)
        with pytest.raises(AttributeError):
            c.__secret__  # noqa: B018
        with pytest.raises(AttributeError):
            c.account._private  # noqa: B018
        with pytest.raises(TypeError, match="JSON"):
            c.add(object())
        assert repr(c.account.withdraw) == "<remote method 'account.withdraw'>"
        batch = c.batch()
        future = batch.add(1, 2)
        with pytest.raises(RuntimeError, match="not been sent"):
            future.result()
        assert not future.done()
