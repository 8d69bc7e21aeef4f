"""Reading what a server sent back, and saying it safely in one line.

Everything here treats the peer's bytes as hostile: answers are parsed with the strict
parser under caps, and any peer text put in evidence goes through ``log_safe`` (escaped,
truncated), so a server cannot drive the auditor's terminal or forge report lines.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from .._core.json import JSONError, StrictJSON
from .._core.logs import log_safe
from .transports import Reply

__all__ = [
    "ANY",
    "EVIDENCE_MAX",
    "Answer",
    "Verdict",
    "clip",
    "error_code",
    "interpret",
    "leaks",
    "match",
    "show",
]

#: Longest evidence line, and the most characters of a payload shown in one.
EVIDENCE_MAX: Final = 200
_PAYLOAD_MAX: Final = 80
_JSON: Final = StrictJSON(max_depth=64, max_object_members=100_000, max_array_items=10**6)

#: Text that is an exception message or a traceback rather than a chosen message (SR-42).
_EXCEPTION_TEXT: Final = re.compile(
    r"Traceback|Exception|Error\b|File \"|line \d+|column \d+|char \d+|object has no|"
    r"takes \d+ positional|unexpected keyword|missing \d+ required|"
    r"\bat 0x[0-9a-f]+",
)


class _Any:
    """Matches any result value (a call whose answer the user did not give)."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()


@dataclass(frozen=True)
class Verdict:
    verdict: str  # pass, fail, warn, skip
    evidence: str


def clip(text: str) -> str:
    """One line, at most EVIDENCE_MAX characters."""
    text = text.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= EVIDENCE_MAX else text[: EVIDENCE_MAX - 3] + "..."


def show(value: object, limit: int = _PAYLOAD_MAX) -> str:
    """A payload or peer value, escaped and truncated for evidence."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "backslashreplace")
    elif not isinstance(value, str):
        value = json.dumps(value, default=repr, ensure_ascii=False)[: limit + 1]
    return log_safe(value, limit)


@dataclass(frozen=True)
class Answer:
    """A reply read as one of: none, json, refused (HTTP 4xx without JSON), crashed
    (5xx without JSON, connection dropped, timeout), garbage, oversized."""

    kind: str
    value: Any = None
    status: int | None = None
    raw: bytes = b""
    elapsed: float = 0.0

    def describe(self) -> str:
        prefix = f"HTTP {self.status} " if self.status is not None else ""
        if self.kind == "none":
            return f"{prefix}no answer".strip()
        if self.kind == "crashed" and not self.raw:
            return f"{prefix}connection dropped or timed out without an answer".strip()
        return f"{prefix}{show(self.raw)}"


def interpret(reply: Reply) -> Answer:
    answer = _interpret(reply)
    return Answer(answer.kind, answer.value, answer.status, answer.raw, reply.elapsed)


def _interpret(reply: Reply) -> Answer:
    status = reply.status
    if reply.truncated:
        return Answer("oversized", status=status, raw=(reply.body or b"")[:_PAYLOAD_MAX])
    if reply.body is None:
        if reply.close_code in _WS_REFUSALS:
            # RFC 6455 section 7.4.1: a WebSocket endpoint refuses data it cannot accept
            # (1003: a binary message to a text protocol; 1007: text that is not UTF-8)
            # by closing with these codes: a refusal, not a crash.
            return Answer("refused", raw=f"WebSocket close {reply.close_code}".encode())
        kind = "crashed" if reply.closed or reply.timed_out else "none"
        return Answer(kind, status=status)
    try:
        value = _JSON.loads(reply.body)
    except JSONError:
        # Not strict JSON (a huge integer echoed back, NaN...): still read it, bounded by
        # READ_CAP and Python's own integer and recursion limits, to judge the answer.
        try:
            value = json.loads(reply.body)
        except (ValueError, RecursionError):
            value = _JSONError
    if value is not _JSONError and _is_response(value):
        return Answer("json", value, status, reply.body)
    if status is not None and 400 <= status < 500:
        return Answer("refused", status=status, raw=reply.body)
    if status is not None and status >= 500:
        return Answer("crashed", status=status, raw=reply.body)
    return Answer("garbage", status=status, raw=reply.body)


_JSONError: Final = object()
_WS_REFUSALS: Final = frozenset({1003, 1007})


def _is_response(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, dict) for v in value)
    return isinstance(value, dict) and ("result" in value or "error" in value)


def error_code(value: Any) -> int | None:
    """The error code of a single error response, else None."""
    if isinstance(value, dict) and isinstance(value.get("error"), dict):
        code = value["error"].get("code")
        return code if type(code) is int else None
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: booleans are not numbers, 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _entry_problem(expected: dict[str, Any], got: Any, ids: list[Any]) -> str | None:
    """Why ``got`` is not the answer ``expected`` (None when it is)."""
    if not isinstance(got, dict):
        return "not a response object"
    if got.get("jsonrpc") != "2.0":
        return 'jsonrpc member is not "2.0"'
    if "result" in got and "error" in got:
        return "has both result and error"
    if not any(_same(got.get("id", _Missing), i) for i in ids):
        return f"id {show(got.get('id'), 30)}, expected {' or '.join(show(i, 30) for i in ids)}"
    if "error" in expected:
        error = got.get("error")
        if not isinstance(error, dict) or type(error.get("code")) is not int:
            return "no error object with an integer code"
        if not isinstance(error.get("message"), str):
            return "error message is not a string"
        if error["code"] != expected["error"]["code"]:
            return f"error {error['code']}, expected {expected['error']['code']}"
        return None
    if "result" not in got:
        return f"error {error_code(got)}, expected a result"
    want = expected["result"]
    if want is not ANY and not _same(got["result"], want):
        return f"result {show(got['result'], 40)}, expected {show(want, 40)}"
    return None


_Missing: Final = object()


def match(expected: Any, answer: Answer, *, ids: dict[int, list[Any]] | None = None) -> str | None:
    """Why ``answer`` is not ``expected`` (a response, a list of them, or None for no
    answer); None when it is. A batch answer may come in any order (JSON-RPC 2.0 §6).
    ``ids`` maps the index of an expected entry to the ids it may carry."""
    if expected is None:
        return None if answer.kind == "none" else f"answered: {answer.describe()}"
    if answer.kind != "json":
        return f"expected a JSON-RPC answer, got {answer.describe()}"
    got = answer.value
    if isinstance(expected, dict):
        if isinstance(got, list):
            return f"answered an array: {answer.describe()}"
        alternatives = (ids or {}).get(0, [expected["id"]])
        return _entry_problem(expected, got, alternatives)
    if not isinstance(got, list):
        return f"expected an array of {len(expected)}, got {answer.describe()}"
    if len(got) != len(expected):
        return f"{len(got)} answers, expected {len(expected)}: {answer.describe()}"
    left = list(got)
    for index, want in enumerate(expected):
        alternatives = (ids or {}).get(index, [want["id"]])
        found = next((g for g in left if _entry_problem(want, g, alternatives) is None), None)
        if found is None:
            return f"no answer matches {show(want, 60)}"
        left.remove(found)
    return None


def leaks(value: Any, marker: str) -> str | None:
    """Why the error in ``value`` leaks (exception text, or the caller's input), else None."""
    entries = value if isinstance(value, list) else [value]
    for entry in entries:
        error = entry.get("error") if isinstance(entry, dict) else None
        if not isinstance(error, dict):
            continue
        for name in ("message", "data"):
            if name not in error:
                continue
            text = error[name] if isinstance(error[name], str) else repr(error[name])
            found = _EXCEPTION_TEXT.search(text)
            if found and not (name == "message" and text in _FIXED_MESSAGES):
                return f"exception text in error.{name}: {show(text, 90)}"
            if marker and marker in text:
                return f"caller input echoed in error.{name}: {show(text, 90)}"
    return None


#: The specification's own messages, which contain the word "error" legitimately.
_FIXED_MESSAGES: Final = frozenset(
    {"Parse error", "Invalid Request", "Method not found", "Invalid params", "Internal error",
     "Server error"}
)  # fmt: skip
