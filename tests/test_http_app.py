"""The ASGI app in process (httpx's ASGI transport), for behaviour where timing does not
matter: CORS, proxies, content types, lifespan, websocket refusal (issue 4)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from safe_rpc import Keyring, Limits, RPCServer
from safe_rpc._transports.http import ASGIApp

ADD = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'
JSON = {"content-type": "application/json"}


def make_app(**options: Any) -> ASGIApp:
    rpc = RPCServer(
        keyring=Keyring({"k": b"k" * 32}, audience="a"), limits=Limits(auth_failures_per_minute=2)
    )

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    return ASGIApp(rpc, **options)


async def post(
    app: ASGIApp, body: bytes = ADD, headers: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=kw.pop("client", ("127.0.0.1", 5000)))
    async with httpx.AsyncClient(
        transport=transport, base_url=kw.pop("base", "http://localhost")
    ) as client:
        return await client.request(
            kw.pop("method", "POST"), "/", content=body, headers={**JSON, **(headers or {})}
        )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_rpc_asgi_property_is_cached_and_serves() -> None:
    """rpc.asgi is one app per server, and it answers calls."""
    rpc = RPCServer()

    @rpc.method(public=True)
    def ping() -> str:
        return "pong"

    assert rpc.asgi is rpc.asgi
    response = run(post(rpc.asgi, b'{"jsonrpc":"2.0","method":"ping","id":1}'))
    assert response.json()["result"] == "pong"


def test_charset_utf8_parameter_accepted() -> None:
    """application/json; charset=utf-8 is JSON too."""
    response = run(post(make_app(), headers={"content-type": "application/json; charset=UTF-8"}))
    assert response.status_code == 200


def test_cors_only_for_allowed_origins() -> None:
    """A configured origin is reflected (never '*'); preflight works; others get nothing."""
    app = make_app(cors_origins=["https://ok.example"])
    ok = run(post(app, headers={"origin": "https://ok.example"}))
    assert ok.headers["access-control-allow-origin"] == "https://ok.example"
    other = run(post(app, headers={"origin": "https://evil.example"}))
    assert "access-control-allow-origin" not in other.headers
    preflight = run(post(app, b"", {"origin": "https://ok.example"}, method="OPTIONS"))
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-methods"] == "POST"
    with pytest.raises(ValueError, match="cors_origins"):
        make_app(cors_origins=["*"])


def test_sr40_forwarded_for_trusted_only_from_configured_proxies() -> None:
    """X-Forwarded-For decides the rate-limit source only when the peer is a trusted proxy."""
    app = make_app(trusted_proxies=["10.0.0.1"])
    bad = {"authorization": "Bearer nope", "x-forwarded-for": "203.0.113.9"}
    for _ in range(2):
        assert run(post(app, headers=bad, client=("10.0.0.1", 1))).status_code == 401
    assert run(post(app, headers=bad, client=("10.0.0.1", 1))).status_code == 429
    # Same proxy, another real client: not blocked.
    other = {**bad, "x-forwarded-for": "203.0.113.10"}
    assert run(post(app, headers=other, client=("10.0.0.1", 1))).status_code == 401
    # An untrusted peer cannot choose its source by sending the header.
    spoof = {**bad, "x-forwarded-for": "198.51.100.1"}
    assert run(post(app, headers=spoof, client=("192.0.2.7", 1))).status_code == 401
    assert run(post(app, headers=spoof, client=("192.0.2.7", 1))).status_code == 401
    assert run(post(app, headers=spoof, client=("192.0.2.7", 1))).status_code == 429
    garbage = {**bad, "x-forwarded-for": "not-an-ip"}
    assert run(post(app, headers=garbage, client=("10.0.0.1", 1))).status_code == 401


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer " + "x" * 5000, "token abc"]
)
def test_malformed_authorization_is_401(authorization: str) -> None:
    """Only 'Bearer <token>' of bounded size is a credential; anything else is a failure."""
    response = run(post(make_app(), headers={"authorization": authorization}))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("base", "status"),
    [
        ("http://localhost:8000", 200),
        ("http://[::1]:8000", 200),
        ("http://127.0.0.1", 200),
        ("http://rebind.example", 403),
    ],
)
def test_sr23_host_names(base: str, status: int) -> None:
    """Loopback names with or without a port pass the default allow-list."""
    assert run(post(make_app(), base=base)).status_code == status


def test_allowed_hosts_configurable_and_wildcard() -> None:
    """Configured names pass; '*' accepts any Host."""
    assert (
        run(post(make_app(allowed_hosts=["api.example"]), base="http://api.example")).status_code
        == 200
    )
    assert run(post(make_app(allowed_hosts=["*"]), base="http://any.example")).status_code == 200


def test_bad_content_length_is_413() -> None:
    """A Content-Length that is not a number is refused before reading."""
    scope_headers = [
        (b"host", b"localhost"),
        (b"content-type", b"application/json"),
        (b"content-length", b"-1"),
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body must not be read")

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": scope_headers, "client": ("127.0.0.1", 1)}
    run(make_app()(scope, receive, send))
    assert sent[0]["status"] == 413


def test_client_disconnect_mid_body_is_quiet() -> None:
    """A client that goes away while sending its body gets no answer and no error."""
    sent: list[Any] = []
    messages = [
        {"type": "http.request", "body": b"[", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Any:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "client": None,
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/json")],
    }
    run(make_app()(scope, receive, send))
    assert sent == []


def test_lifespan_and_websocket() -> None:
    """Lifespan events are acknowledged; with WebSocket off, a handshake is refused (it is
    on by default: tests/test_websocket.py)."""
    sent: list[Any] = []
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Any:
        return events.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    run(make_app()({"type": "lifespan"}, receive, send))
    run(make_app(websocket=False)({"type": "websocket"}, receive, send))
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
        "websocket.close",
    ]
