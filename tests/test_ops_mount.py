"""An ASGIApp mounted under /rpc in a real FastAPI app and a real Starlette app, served by
uvicorn on loopback; the host app's lifespan drives the server's lifespan."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from servers import read_response
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from uvicorn_thread import running

from safe_rpc import ASGIApp, Client, Context, Keyring, RPCServer, Unauthenticated

KEYRING = Keyring({"m": b"m" * 32}, audience="mount")


def make_rpc(events: list[str]) -> RPCServer:
    @contextlib.asynccontextmanager
    async def lifespan(server: RPCServer) -> AsyncIterator[dict[str, Any]]:
        events.append("rpc up")
        yield {"pool": "shared-pool"}
        events.append("rpc down")

    rpc = RPCServer(keyring=KEYRING, lifespan=lifespan)

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    @rpc.method(name="pool.name", scopes=["db"])
    def pool_name(ctx: Context) -> str:
        return str(ctx.state["pool"])

    return rpc


def get(port: int, path: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status, _, body = read_response(sock)
    return status, body


def check_mounted(port: int) -> None:
    url = f"http://127.0.0.1:{port}/rpc/"
    with Client(url, token=KEYRING.issue("m", ["db"])) as client:
        assert client.add(2, 3) == 5
        assert client.call("pool.name") == "shared-pool"  # state from the lifespan
    with Client(url) as anonymous, pytest.raises(Unauthenticated):
        anonymous.call("pool.name")
    assert get(port, "/rpc/healthz") == (200, b"ok")  # probe paths are relative to the mount
    assert get(port, "/rpc/readyz") == (200, b"ok")
    assert get(port, "/hello") == (200, b"host app")  # the host app's own routes still work


def test_mounted_in_fastapi_with_the_host_lifespan() -> None:
    events: list[str] = []
    rpc_app = ASGIApp(make_rpc(events))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("host up")
        async with rpc_app.lifespan_context():  # Starlette does not pass lifespan to mounts
            yield
        events.append("host down")

    app = FastAPI(lifespan=lifespan)

    @app.get("/hello", response_class=PlainTextResponse)
    def hello() -> str:
        return "host app"

    app.mount("/rpc", rpc_app)
    with running(app) as port:
        check_mounted(port)
    assert events == ["host up", "rpc up", "rpc down", "host down"]


def test_mounted_in_starlette_with_the_host_lifespan() -> None:
    events: list[str] = []
    rpc_app = ASGIApp(make_rpc(events))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with rpc_app.lifespan_context():
            yield

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("host app")

    app = Starlette(routes=[Route("/hello", hello), Mount("/rpc", app=rpc_app)], lifespan=lifespan)
    with running(app) as port:
        check_mounted(port)
    assert events == ["rpc up", "rpc down"]
