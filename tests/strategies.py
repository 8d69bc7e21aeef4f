"""Hypothesis strategies and the shared oracle for every fuzz test (issue 6).

Generators:
    ``envelopes()`` / ``batches()``: valid JSON-RPC 2.0 messages drawn from the schemas.
    ``broken_envelopes()``: messages that break exactly one envelope rule.
    ``hostile_messages()``: bytes: valid, broken and mutated messages, corpus files, and
    byte-level mutations (truncation, flips, insertions, splices, BOMs, bad UTF-8, lone
    surrogates, deep nesting, duplicate names, non-finite and huge numbers).

Oracle:
    ``expected_answers(data)`` decides from the bytes alone, independently of safe_rpc's
    parser and envelope code, whether a response is due and how many entries it holds.
    ``check_answer(data, raw)`` asserts a response is what the oracle expects: schema-valid,
    codes only from the library's error table, fixed messages, no caller input echoed beyond the id.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from corpora import JSONTESTSUITE
from hypothesis import strategies as st
from support import KNOWN_CODES, check_response

from safe_rpc import Limits
from safe_rpc._audit.cases import HOSTILE_FRAGMENTS
from safe_rpc._core.schemas import validate

LIMITS = Limits()
INT64 = (-(2**63), 2**63 - 1)

#: Methods the fuzz servers register (see ``make_fuzz_server``), plus names that must fail.
METHODS = ["add", "echo", "notify_me", "boom", "missing", "rpc.discover", "__class__", "a..b"]

FIXED_MESSAGES = {
    -32700: "Parse error",
    -32600: "Invalid Request",
    -32601: "Method not found",
    -32602: "Invalid params",
    -32603: "Internal error",
    -32001: "Unauthenticated",
    -32002: "Request timed out",
    -32003: "Forbidden",
    -32004: "Rate limited",
    -32007: "Request too large",
    -32008: "Response too large",
    -32009: "Server busy",
    -32010: "Batch too large",
}


def corpus_files() -> list[Path]:
    """The JSONTestSuite files (tests/corpora.py); [] where the corpus is absent."""
    return JSONTESTSUITE.files("test_parsing")


# -- JSON values and envelopes ---------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(*INT64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
ids = st.none() | st.integers(*INT64) | _text
params = st.lists(json_values, max_size=4) | st.dictionaries(_text, json_values, max_size=4)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A request or notification that satisfies schemas/request.json."""
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": draw(st.sampled_from(METHODS) | _text)}
    if draw(st.booleans()):
        msg["params"] = draw(
            params
            | st.tuples(st.integers(-100, 100), st.integers(-100, 100)).map(list)
            | st.fixed_dictionaries({"a": st.integers(-9, 9), "b": st.integers(-9, 9)})
        )
    if draw(st.booleans()):
        msg["id"] = draw(ids)
    return msg


_WRONG: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.integers() | st.floats() | _text | st.just([]) | st.just({})
)


@st.composite
def broken_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """An envelope with exactly one rule broken (JSON-RPC 2.0 section 4)."""
    msg = draw(envelopes())
    rule = draw(st.sampled_from(["jsonrpc", "method", "params", "id", "missing", "extra"]))
    if rule == "jsonrpc":
        msg["jsonrpc"] = draw(_WRONG.filter(lambda v: v != "2.0") | st.just("2.1"))
    elif rule == "method":
        msg["method"] = draw(_WRONG.filter(lambda v: not isinstance(v, str)))
    elif rule == "params":
        msg["params"] = draw(
            st.none() | st.booleans() | st.integers() | _text | st.floats(allow_nan=False)
        )
    elif rule == "id":
        msg["id"] = draw(st.booleans() | st.just([]) | st.just({}) | st.just(1.5) | st.just(-0.25))
    elif rule == "missing":
        del msg[draw(st.sampled_from(["jsonrpc", "method"]))]
    else:
        msg[draw(_text.filter(lambda k: k not in ("jsonrpc", "method", "params", "id")))] = 1
    return msg


batches = st.lists(envelopes() | broken_envelopes() | json_values, min_size=1, max_size=6)


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


# -- byte-level mutations ----------------------------------------------------------------------

_INSERTS = HOSTILE_FRAGMENTS  # one copy, shared with safe-rpc audit


@st.composite
def mutated(draw: st.DrawFn, seed: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(seed))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "splice", "wrap"]))
        pos = draw(st.integers(0, len(data)))
        if op == "truncate":
            del data[pos:]
        elif op == "flip" and data:
            i = min(pos, len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(_INSERTS) | st.binary(max_size=4))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 4))]
        elif op == "splice":
            other = draw(seed)
            data[pos:] = other[draw(st.integers(0, len(other))) :]
        else:
            depth = draw(st.integers(1, 40))
            data[:] = b"[" * depth + bytes(data) + b"]" * depth
    return bytes(data)


def _corpus_seed() -> st.SearchStrategy[bytes]:
    seeds = [f.read_bytes() for f in corpus_files() if f.stat().st_size < 4096]
    return st.sampled_from(seeds) if seeds else st.nothing()


def _message_seed() -> st.SearchStrategy[bytes]:
    return (envelopes() | broken_envelopes() | batches).map(_encode)


def hostile_messages() -> st.SearchStrategy[bytes]:
    """Bytes a hostile peer could send: everything above, mixed."""
    seeds = _message_seed() | _corpus_seed()
    return seeds | mutated(seeds) | st.binary(max_size=64)


# -- the oracle ----------------------------------------------------------------------------------


class _Reject(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs) or len(pairs) > LIMITS.max_object_members:
        raise _Reject
    return obj


def _int(text: str) -> int:
    value = int(text)
    if not INT64[0] <= value <= INT64[1]:
        raise _Reject
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Reject
    return value


def _const(name: str) -> Any:
    raise _Reject


def _walk(value: Any, depth: int) -> None:
    if isinstance(value, list | dict):
        if depth > LIMITS.max_depth:
            raise _Reject
        if isinstance(value, list) and len(value) > LIMITS.max_array_items:
            raise _Reject
        items = value if isinstance(value, list) else list(value) + list(value.values())
        for item in items:
            _walk(item, depth + 1)
    elif isinstance(value, str):
        value.encode("utf-8")  # UnicodeEncodeError for a lone surrogate


def reference_parse(data: bytes) -> tuple[bool, Any]:
    """An independent, obviously-correct strict parse: (accepted, value).

    Slow and recursive on purpose (it only ever sees inputs whose depth it bounds itself
    before recursing far: CPython's recursion limit is far above ``max_depth`` + slack).
    """
    if data.startswith(b"\xef\xbb\xbf") or len(data) > LIMITS.max_request_bytes:
        return False, None
    try:
        text = data.decode("utf-8")
        # Depth bound without recursion: count nesting outside strings char by char.
        depth = 0
        in_string = escaped = False
        for ch in text:
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "[{":
                depth += 1
                if depth > LIMITS.max_depth:
                    return False, None
            elif ch in "]}":
                depth -= 1
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_const,
        )
        _walk(value, 1)
    except (_Reject, ValueError, UnicodeError, RecursionError):
        return False, None
    return True, value


def _is_notification(element: Any) -> bool:
    if not isinstance(element, dict) or "id" in element:
        return False
    try:
        validate(element, "request")
    except Exception:
        return False
    return True


def expected_answers(data: bytes) -> int | None:
    """How many response entries ``data`` must get: None (no response), 0 (a single
    response object), or N >= 1 (a batch array of N entries)."""
    accepted, value = reference_parse(data)
    if not accepted or not isinstance(value, list):
        return None if accepted and _is_notification(value) else 0
    if not value or len(value) > LIMITS.max_batch:
        return 0
    count = sum(1 for element in value if not _is_notification(element))
    return count or None


def _check_error(error: dict[str, Any]) -> None:
    code = error["code"]
    assert code in KNOWN_CODES, code
    assert error["message"] == FIXED_MESSAGES[code]
    data = error.get("data")
    if code == -32603:
        assert data is None or set(data) == {"error_id"}
    elif code == -32602:
        assert isinstance(data, list)
        assert len(data) <= 20
        for entry in data:
            assert set(entry) == {"loc", "type", "msg"}
            # Names in loc come from the argument model, never from the caller.
            assert all(
                isinstance(p, int) or p in ("a", "b", "x", "*", "params") for p in entry["loc"]
            )
    else:
        assert data is None


def check_answer(data: bytes, raw: bytes | None) -> None:
    """Assert ``raw`` is the right kind of answer to ``data`` (see module docstring)."""
    expected = expected_answers(data)
    if expected is None:
        assert raw is None, (data, raw)
        return
    answer = check_response(raw)
    if expected == 0:
        assert isinstance(answer, dict), (data, raw)
        entries = [answer]
    else:
        assert isinstance(answer, list), (data, raw)
        assert len(answer) == expected, (data, raw)
        entries = answer
    for entry in entries:
        if "error" in entry:
            _check_error(entry["error"])
