"""Servers built with the peers' libraries, the way their documentation shows, for the
audit tests: each registers ``add(a, b)`` and nothing else.

* ``jsonrpcserver_app``: jsonrpcserver's ``dispatch`` behind a minimal ASGI app (the
  library takes a ``str``: the wrapper refuses a body that is not UTF-8 with 400).
* ``json_rpc_app``: json-rpc's ``JSONRPCResponseManager.handle`` behind the same wrapper
  (the library takes the bytes as they came).
* ``fastapi_jsonrpc_app``: a fastapi-jsonrpc ``API`` with one ``Entrypoint`` at ``/``.

The wrapper has no body size limit and no deadlines, like the examples it follows: what
the audit reports about those is about such a deployment, which is the common one.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole request body; None once it passed ``limit`` bytes."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if limit is not None and len(body) > limit:
            return None
        if not message.get("more_body", False):
            return body


class NotUTF8(Exception):
    """A wrapper could not give the library the ``str`` it takes."""


def _wrap(handle: Callable[[bytes], bytes | None]) -> ASGI:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        assert body is not None
        try:
            answer = handle(body)
        except NotUTF8:  # the wrapper's own decoding, not the library's
            answer, status, kind = b"body is not UTF-8", 400, b"text/plain"
        else:
            status, kind = (200 if answer else 204), b"application/json"
        headers = [(b"content-type", kind), (b"content-length", str(len(answer or b"")).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer or b""})

    return app


def jsonrpcserver_app() -> ASGI:
    with warnings.catch_warnings():
        # jsonrpcserver 5.0.9 loads its schema with a deprecated importlib.resources call.
        warnings.simplefilter("ignore", DeprecationWarning)
        from jsonrpcserver import Result, Success, dispatch

    def add(a: int, b: int) -> Result:
        return Success(a + b)

    def handle(body: bytes) -> bytes | None:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise NotUTF8 from None
        answer: str = dispatch(text, methods={"add": add})
        return answer.encode() if answer else None

    return _wrap(handle)


def json_rpc_app() -> ASGI:
    from jsonrpc import Dispatcher, JSONRPCResponseManager

    dispatcher = Dispatcher()
    dispatcher.add_method(lambda a, b: a + b, name="add")

    def handle(body: bytes) -> bytes | None:
        response = JSONRPCResponseManager.handle(body, dispatcher)
        return response.json.encode() if response is not None else None

    return _wrap(handle)


def fastapi_jsonrpc_app() -> Any:
    import fastapi_jsonrpc as jsonrpc

    app = jsonrpc.API()
    api = jsonrpc.Entrypoint("/")

    @api.method()
    def add(a: int, b: int) -> int:
        return a + b

    app.bind_entrypoint(api)  # type: ignore[no-untyped-call]
    return app


APPS = {
    "json-rpc": json_rpc_app,
    "jsonrpcserver": jsonrpcserver_app,
    "fastapi-jsonrpc": fastapi_jsonrpc_app,
}


def main() -> None:
    """``python tests/apps/peers.py NAME [PORT]``: serve one peer on 127.0.0.1 (default
    port 8001) with plain uvicorn, to try ``safe-rpc audit`` against it."""
    import sys

    import uvicorn

    name, port = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8001
    uvicorn.run(APPS[name](), host="127.0.0.1", port=port, lifespan="off", log_level="warning")


if __name__ == "__main__":
    main()
