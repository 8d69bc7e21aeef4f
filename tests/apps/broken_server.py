"""A small JSON-RPC 2.0 server over ASGI with each known defect switchable, for the audit
tests: with no defect it is strict and correct; each defect breaks one thing the way real
servers do, so the tests can pin which check catches it.

Defects (names in ``DEFECTS``):
    leak-exception      exception text in ``error.data`` (json-rpc, jsonrpcserver do this)
    empty-batch-array   answers ``[]`` to an empty batch instead of one -32600 error
    duplicate-keys      parses duplicate member names (last one wins)
    crash-on-malformed  stops serving after a message that is not JSON (stackql#701)
    no-body-limit       reads bodies of any size (otherwise 413 past 1 MiB)
    answers-notifications  answers notifications
    wrong-id            echoes the id as a string
    no-batch-limit      runs batches of any length (otherwise one -32600 past 100)
    lenient-json        accepts NaN, Infinity and huge numbers
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final

from peers import ASGI, Receive, Scope, Send, read_body

DEFECTS = frozenset(
    {
        "leak-exception",
        "empty-batch-array",
        "duplicate-keys",
        "crash-on-malformed",
        "no-body-limit",
        "answers-notifications",
        "wrong-id",
        "no-batch-limit",
        "lenient-json",
    }
)
LIMIT = 1024 * 1024
MAX_BATCH = 100


class _Bad(Exception):
    pass


class BrokenServer:
    """``defects`` can change between requests; ``crash`` is called to stop serving."""

    def __init__(self, defects: set[str], crash: Callable[[], None] = lambda: None) -> None:
        assert defects <= DEFECTS, defects - DEFECTS
        self.defects = defects
        self.crash = crash

    def app(self) -> ASGI:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            body = await read_body(receive, None if "no-body-limit" in self.defects else LIMIT)
            if body is None:
                return await _send(send, 413, b"")
            answer = self.handle(body)
            if answer is _CRASH:
                self.crash()
                raise ConnectionAbortedError("crashed on purpose")
            await _send(send, 200 if answer else 204, answer or b"")

        return app

    def handle(self, body: bytes) -> bytes | None:
        try:
            message = self._parse(body)
        except (_Bad, ValueError, RecursionError) as exc:
            if "crash-on-malformed" in self.defects:
                return _CRASH
            return self._dump(self._error(-32700, "Parse error", None, exc))
        if isinstance(message, list):
            if not message:
                if "empty-batch-array" in self.defects:
                    return b"[]"
                return self._dump(self._error(-32600, "Invalid Request", None))
            if len(message) > MAX_BATCH and "no-batch-limit" not in self.defects:
                return self._dump(self._error(-32600, "Invalid Request", None))
            answers = [a for a in (self._one(m) for m in message) if a is not None]
            return self._dump(answers) if answers else None
        answer = self._one(message)
        return None if answer is None else self._dump(answer)

    def _parse(self, body: bytes) -> Any:
        lenient = "lenient-json" in self.defects

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            if len(dict(items)) != len(items) and "duplicate-keys" not in self.defects:
                raise _Bad("duplicate member")
            return dict(items)

        def constant(name: str) -> float:
            if not lenient:
                raise _Bad(f"{name} is not JSON")
            return math.nan

        def number(text: str) -> float:
            value = float(text)
            if not (lenient or math.isfinite(value)):
                raise _Bad("number out of range")
            return value

        def integer(text: str) -> int:
            if len(text) > 19 and not lenient:
                raise _Bad("integer out of range")
            return int(text)

        return json.loads(
            body.decode("utf-8"),
            object_pairs_hook=pairs,
            parse_constant=constant,
            parse_float=number,
            parse_int=integer,
        )

    def _one(self, message: Any) -> dict[str, Any] | None:
        valid = (
            isinstance(message, dict)
            and message.get("jsonrpc") == "2.0"
            and isinstance(message.get("method"), str)
            and set(message) <= {"jsonrpc", "method", "params", "id"}
            and isinstance(message.get("params", []), list | dict)
            and _valid_id(message.get("id"))
        )
        if not valid:
            return self._error(-32600, "Invalid Request", None)
        notification = "id" not in message
        if notification and "answers-notifications" not in self.defects:
            return None
        request_id = message.get("id")
        if "wrong-id" in self.defects and request_id is not None:
            request_id = str(request_id)
        if message["method"] != "add":
            return self._error(-32601, "Method not found", request_id)
        params = message.get("params", [])
        try:
            a, b = params if isinstance(params, list) else (params["a"], params["b"])
            if set(params) - {"a", "b"} and isinstance(params, dict):
                raise TypeError(f"add() got an unexpected keyword argument {sorted(params)}")
            return {"jsonrpc": "2.0", "result": a + b, "id": request_id}
        except (TypeError, ValueError, KeyError) as exc:
            return self._error(-32602, "Invalid params", request_id, exc)

    def _error(
        self, code: int, message: str, id: Any, exc: BaseException | None = None
    ) -> dict[str, Any]:
        error: dict[str, Any] = {"code": code, "message": message}
        if exc is not None and "leak-exception" in self.defects:
            error["data"] = f"{type(exc).__name__}: {exc}"
        return {"jsonrpc": "2.0", "error": error, "id": id}

    def _dump(self, value: Any) -> bytes:
        text: str = json.dumps(value)
        return text.encode()


_CRASH: Final = b"crash"  # a sentinel: compared by identity only


def _valid_id(value: Any) -> bool:
    integral = type(value) is float and value.is_integer()
    return value is None or isinstance(value, str) or type(value) is int or integral


async def _send(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
