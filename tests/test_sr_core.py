"""One test per threat row of SECURITY.md that the core (parser, envelope,
dispatcher, registry, errors) answers for. Each hostile case is followed by a normal
request that must still succeed."""

from __future__ import annotations

import logging
import math
import pickle  # only to build a hostile payload; never loaded
import time
from typing import Any

import pytest
from core_support import answer, assert_still_serving, error_code, make_rpc
from support import check_response, request

from safe_rpc import Context, Keyring, Limits, Principal, RPCServer, Unauthenticated
from safe_rpc._core.json import JSONError, StrictJSON, dumps_strict
from safe_rpc._core.logs import log_safe

# Generous bound: these are about "no message costs seconds", not about speed.
FAST = 1.0


def timed_code(rpc: RPCServer, data: bytes) -> int:
    started = time.perf_counter()
    code = error_code(rpc, data)
    assert time.perf_counter() - started < FAST
    return code


def test_sr01_pickle_payload_is_a_parse_error() -> None:
    """A pickle payload is never deserialised: it is not JSON, so it is -32700."""
    calls: list[object] = []
    rpc = make_rpc()

    @rpc.method(public=True)
    def spy() -> None:
        calls.append(1)

    payload = pickle.dumps({"jsonrpc": "2.0", "method": "spy", "id": 1})
    assert error_code(rpc, payload) == -32700
    assert calls == []
    assert_still_serving(rpc)


@pytest.mark.parametrize(
    "method",
    [
        "__class__",
        "__init__",
        "add.__globals__",
        "add.__code__",
        "math.__dict__",
        "os.system",
        "rpc.system",
        "rpc.discover",
        "_private",
        "a..b",
        "",
        "x" * 10 * 1024,
    ],
)
def test_sr02_no_attribute_traversal(method: str) -> None:
    """Dispatch goes only through the registry: reflective names are -32601 (and
    ``rpc.discover`` too on a server built with ``discover=False``)."""
    rpc = make_rpc(discover=False) if method == "rpc.discover" else make_rpc()
    before = rpc.methods.keys()
    assert error_code(rpc, request(method, [])) == -32601
    assert rpc.methods.keys() == before
    assert_still_serving(rpc)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 1_048_576,
        b"[" * 33 + b"]" * 33,
        b'{"a":' * 5000,
        b'{"jsonrpc":"2.0","method":"add","params":' + b"[" * 40 + b"]" * 40 + b',"id":1}',
    ],
    ids=["million-brackets", "depth-33", "object-chain", "deep-params"],
)
def test_sr05_deep_nesting_rejected_before_recursion(data: bytes) -> None:
    """Over-deep input is -32700 quickly, whatever its size."""
    rpc = make_rpc()
    assert timed_code(rpc, data) == -32700
    assert_still_serving(rpc)


def test_sr05_depth_at_the_limit_is_accepted() -> None:
    """Nesting exactly at the configured depth parses; one more level does not."""
    rpc = make_rpc(Limits(max_depth=4))

    @rpc.method(public=True)
    def echo(value: Any) -> Any:
        return value

    ok = b'{"jsonrpc":"2.0","method":"echo","params":[[[1]]],"id":1}'  # depth 4
    assert answer(rpc, ok)["result"] == [[1]]
    deep = b'{"jsonrpc":"2.0","method":"echo","params":[[[[1]]]],"id":1}'
    assert error_code(rpc, deep) == -32700
    assert_still_serving(rpc)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":2}',
        b'{"jsonrpc":"2.0","method":"add","method":"rpc.x","params":[1,2],"id":1}',
        b'{"jsonrpc":"2.0","method":"add","params":{"a":1,"a":2,"b":3},"id":1}',
        b'[{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1,"id":2}]',
    ],
)
def test_sr06_duplicate_member_names_rejected(data: bytes) -> None:
    """Any object with a repeated member name, at any depth, is -32700."""
    rpc = make_rpc()
    assert error_code(rpc, data) == -32700
    assert_still_serving(rpc)


@pytest.mark.parametrize(
    "literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" + b"0" * 400 + b".0"]
)
def test_sr07_nan_and_infinity_rejected(literal: bytes) -> None:
    """Non-finite numbers, as literals or by overflow, are -32700 in any position."""
    rpc = make_rpc()
    assert error_code(rpc, b"[" + literal + b"]") == -32700
    data = b'{"jsonrpc":"2.0","method":"add","params":[' + literal + b',1],"id":1}'
    assert error_code(rpc, data) == -32700
    assert_still_serving(rpc)


def test_sr07_handler_returning_nan_is_internal_error() -> None:
    """A handler returning NaN or infinity answers -32603, never the token NaN."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def bad(kind: str) -> float:
        return math.nan if kind == "nan" else math.inf

    for kind in ("nan", "inf"):
        raw = rpc.dispatch(request("bad", [kind]))
        assert raw is not None
        assert b"NaN" not in raw
        assert b"Infinity" not in raw
        assert check_response(raw)["error"]["code"] == -32603
    assert_still_serving(rpc)


def test_sr07_underflow_is_zero() -> None:
    """A float that underflows is accepted as 0.0 (only overflow is refused)."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def same(x: float) -> float:
        return x

    assert answer(rpc, request("same", [1e-400]))["result"] == 0.0


@pytest.mark.parametrize(
    "number",
    [b"9223372036854775808", b"-9223372036854775809", b"1" * 20, b"7" * 5000, b"-" + b"9" * 4400],
)
def test_sr08_huge_integers_rejected(number: bytes) -> None:
    """Integers outside signed 64 bits are -32700, before any quadratic conversion."""
    rpc = make_rpc()
    data = b'{"jsonrpc":"2.0","method":"add","params":[' + number + b',1],"id":1}'
    assert timed_code(rpc, data) == -32700
    assert_still_serving(rpc)


def test_sr08_int64_bounds_accepted_and_huge_results_refused() -> None:
    """The int64 extremes pass; a handler returning 10**5000 answers -32603."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def same(x: int) -> int:
        return x

    @rpc.method(public=True)
    def huge() -> int:
        return 10**5000

    for x in (2**63 - 1, -(2**63)):
        assert answer(rpc, request("same", [x]))["result"] == x
    assert error_code(rpc, request("same", [1], id=1).replace(b"[1]", b"[1e2]")) == -32602
    assert timed_code(rpc, request("huge")) == -32603
    assert_still_serving(rpc)


def test_sr08_encoder_refuses_ints_outside_int64_anywhere() -> None:
    """dumps_strict refuses an out-of-range int nested in dicts, lists or tuples."""
    assert dumps_strict({"a": [(2**63 - 1, -(2**63))]}) == (
        b'{"a":[[9223372036854775807,-9223372036854775808]]}'
    )
    for value in ({"a": [1, (2, 2**63)]}, [-(2**63) - 1], (10**30,)):
        with pytest.raises(JSONError):
            dumps_strict(value)
    assert dumps_strict({"n": "12345678901234567890"}) == b'{"n":"12345678901234567890"}'


@pytest.mark.parametrize(
    "data",
    [
        b'["\\ud800"]',
        b'["\\uDFFF"]',
        b'{"\\ud800":1}',
        b'{"jsonrpc":"2.0","method":"add\\udc00","params":[1,2],"id":1}',
        b'["\xed\xa0\x80"]',  # a surrogate encoded in (invalid) UTF-8
        b'["\xff"]',
        b"\xef\xbb\xbf{}",
        '{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}'.encode("utf-16"),
        '{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}'.encode("utf-16-be"),
        '{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}'.encode("utf-32"),
    ],
)
def test_sr09_surrogates_and_non_utf8_rejected(data: bytes) -> None:
    """Lone surrogates, invalid UTF-8, a BOM and UTF-16/32 are all -32700."""
    rpc = make_rpc()
    assert error_code(rpc, data) == -32700
    assert_still_serving(rpc)


def test_sr09_surrogate_pairs_and_lone_surrogate_results() -> None:
    """A proper surrogate pair is text; a handler returning a lone surrogate is -32603."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def same(text: str) -> str:
        return text

    @rpc.method(public=True)
    def lone() -> str:
        return "\ud800"

    data = b'{"jsonrpc":"2.0","method":"same","params":["\\ud83d\\ude00"],"id":1}'
    assert answer(rpc, data)["result"] == "\U0001f600"
    assert error_code(rpc, request("lone")) == -32603
    assert_still_serving(rpc)


def test_sr09_text_input_gets_the_same_rules() -> None:
    """The parser applies the surrogate rule to ``str`` input as well as to bytes."""
    parser = StrictJSON(max_depth=4, max_object_members=4, max_array_items=4)
    assert parser.loads('{"a":["\\ud83d\\ude00"]}') == {"a": ["\U0001f600"]}
    with pytest.raises(JSONError):
        parser.loads('["\\ud800"]')


def test_sr10_hash_collision_body_rejected_fast() -> None:
    """The integer hash-collision body and over-wide objects are -32700 in well under 1 s."""
    rpc = make_rpc()
    collisions = ",".join(str(k * (2**61 - 1)) for k in range(1, 20_001))
    data = ('{"jsonrpc":"2.0","method":"add","params":[' + collisions + '],"id":1}').encode()
    assert len(data) > 400_000
    assert timed_code(rpc, data) == -32700
    wide = "{" + ",".join(f'"k{i}":{i}' for i in range(1001)) + "}"
    assert timed_code(rpc, wide.encode()) == -32700
    assert_still_serving(rpc)


@pytest.mark.parametrize(
    "data",
    [
        b'{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1} /* c */',
        b'{"jsonrpc":"2.0","method":"add","params":[1,2,],"id":1}',
        b"{'jsonrpc':'2.0','method':'add','params':[1,2],'id':1}",
        b'{"jsonrpc":"2.0","method":"add","params":[01,2],"id":1}',
        b'{"jsonrpc":"2.0","method":"add","params":[0x1,2],"id":1}',
        b'{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}x',
        b'{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}{}',
        b'{"jsonrpc":"2.0","method":"add","params":[+1,2],"id":1}',
        b'{jsonrpc:"2.0"}',
        b"tru",
        b"",
        b"   ",
    ],
)
def test_sr11_lenient_syntax_rejected(data: bytes) -> None:
    """Comments, trailing commas, quotes, leading zeros, hex and trailing garbage: -32700."""
    rpc = make_rpc()
    assert error_code(rpc, data) == -32700
    assert_still_serving(rpc)


@pytest.mark.parametrize(
    "data",
    [b"\x00", b"\x80\x81", b"[\x00]", b'"\\', b"[1,", b'{"a"', bytes(range(256)), b"\\u0000"],
)
def test_sr12_parser_errors_never_escape(data: bytes) -> None:
    """Odd bytes give exactly one schema-valid -32700, never an exception, in both drivers."""
    import asyncio

    rpc = make_rpc()
    assert error_code(rpc, data) == -32700
    assert check_response(asyncio.run(rpc.dispatch_async(data)))["error"]["code"] == -32700
    assert_still_serving(rpc)


def test_sr12_pipeline_bug_becomes_one_internal_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug inside the pipeline is caught: -32603 with id null, logged, never raised."""
    rpc = make_rpc()

    def broken(element: object) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr("safe_rpc._core.pipeline.classify", broken)
    reply = answer(rpc, request("add", [1, 2]))
    assert reply["error"]["code"] == -32603
    assert reply["id"] is None
    assert any(r.exc_info and "pipeline failure" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    assert_still_serving(rpc)


@pytest.mark.parametrize(
    ("message", "id_"),
    [
        ({"jsonrpc": "2.1", "method": "add", "id": 1}, 1),
        ({"jsonrpc": 2.0, "method": "add", "id": 1}, 1),
        ({"method": "add", "params": [1, 2], "id": 1}, 1),
        ({"id": 1}, 1),
        ({"jsonrpc": "2.0", "method": "add", "id": []}, None),
        ({"jsonrpc": "2.0", "method": "add", "id": {}}, None),
        ({"jsonrpc": "2.0", "method": "add", "id": 1.5}, None),
        ({"jsonrpc": "2.0", "method": "add", "id": True}, None),
        ({"jsonrpc": "2.0", "method": "add", "params": None, "id": 1}, 1),
        ({"jsonrpc": "2.0", "method": "add", "params": "x", "id": "s"}, "s"),
        ({"jsonrpc": "2.0", "method": "add", "params": 3, "id": 1}, 1),
        ({"jsonrpc": "2.0", "method": 1, "id": 1}, 1),
        ({"jsonrpc": "2.0", "method": None, "id": 1}, 1),
        ({"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1, "extra": 1}, 1),
        (1, None),
        (None, None),
        ("add", None),
    ],
)
def test_sr13_malformed_envelopes_are_invalid_requests(message: object, id_: object) -> None:
    """Each envelope rule is enforced with -32600; the id is echoed only when valid."""
    import json

    rpc = make_rpc()
    reply = answer(rpc, json.dumps(message).encode())
    assert reply["error"] == {"code": -32600, "message": "Invalid Request"}
    assert reply["id"] == id_
    assert type(reply["id"]) is type(id_)
    assert_still_serving(rpc)


def test_sr14_batches_are_bounded_and_answered_per_element() -> None:
    """[] is one -32600, non-objects get one each, an oversized batch runs nothing."""
    calls: list[int] = []
    rpc = make_rpc(Limits(max_batch=5))

    @rpc.method(public=True)
    def spy(n: int) -> int:
        calls.append(n)
        return n

    assert answer(rpc, b"[]")["error"]["code"] == -32600
    assert [e["error"]["code"] for e in answer(rpc, b"[1]")] == [-32600]
    assert [e["error"]["code"] for e in answer(rpc, b"[1,2,3]")] == [-32600] * 3
    over = "[" + ",".join(request("spy", [i], id=i).decode() for i in range(6)) + "]"
    reply = answer(rpc, over.encode())
    assert reply == {
        "jsonrpc": "2.0",
        "error": {"code": -32010, "message": "Batch too large"},
        "id": None,
    }
    assert calls == []
    notes = "[" + ",".join(request("spy", [i], id="notification").decode() for i in range(5)) + "]"
    assert rpc.dispatch(notes.encode()) is None
    assert calls == [0, 1, 2, 3, 4]
    assert_still_serving(rpc)


@pytest.mark.parametrize(
    "params",
    [
        ["12", 1],
        [True, 1],
        [1.5, 1],
        {"a": 1, "b": 2, "admin": True},
        {"a": 1},
        [1, 2, 3],
        [None, 1],
    ],
)
def test_sr16_params_are_strict(params: object) -> None:
    """Type juggling, mass assignment and arity mistakes are -32602 without echoing input."""
    rpc = make_rpc()
    raw = rpc.dispatch(request("add", params))
    assert raw is not None
    assert b"admin" not in raw
    assert b'"12"' not in raw
    assert check_response(raw)["error"]["code"] == -32602
    assert_still_serving(rpc)


@pytest.mark.parametrize("value", ["nan", "NaN", "Infinity", "-inf", "1e400"])
def test_sr16_float_params_refuse_non_finite_strings(value: str) -> None:
    """A float parameter refuses "nan"/"Infinity" strings (strict and finite)."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def scale(x: float) -> float:
        return x * 2

    assert error_code(rpc, request("scale", [value])) == -32602
    assert answer(rpc, request("scale", [1.5]))["result"] == 3.0


def test_sr42_errors_leak_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """No exception text, path, traceback or input echo reaches the wire."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def crash() -> None:
        raise ValueError("password=hunter2 /etc/app.py")

    raw = rpc.dispatch(request("crash"))
    assert raw is not None
    for secret in (b"hunter2", b"/etc/app.py", b"Traceback", b"ValueError", b".py"):
        assert secret not in raw
    reply = check_response(raw)
    assert reply["error"]["message"] == "Internal error"
    assert set(reply["error"]["data"]) == {"error_id"}

    bad_params = rpc.dispatch(request("add", ["sekret-value", 1]))
    assert bad_params is not None
    assert b"sekret-value" not in bad_params
    parse = rpc.dispatch(b'{"jsonrpc":"2.0","method":"sekret-value",]')
    assert parse is not None
    assert b"sekret" not in parse
    unknown = rpc.dispatch(request("sekret_method"))
    assert unknown is not None
    assert b"sekret" not in unknown
    assert_still_serving(rpc)


def test_sr42_invalid_params_data_is_bounded() -> None:
    """-32602 data holds at most 20 {loc, type, msg} entries with short messages."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def many(xs: list[int]) -> int:
        return len(xs)

    raw = rpc.dispatch(request("many", [["s"] * 500]))
    assert raw is not None
    assert len(raw) < 4096
    data = check_response(raw)["error"]["data"]
    assert 1 <= len(data) <= 20
    assert all(set(entry) == {"loc", "type", "msg"} for entry in data)
    assert_still_serving(rpc)


HOSTILE_NAME = "\x1b[31mfake\r\nINFO admin login" + "A" * 300


class _FakeKeyring:
    """A keyring stand-in that accepts one token and names the caller HOSTILE_NAME."""

    def verify(self, token: str) -> Principal:
        if token != "good":
            raise Unauthenticated()
        return Principal(subject=HOSTILE_NAME, scopes=frozenset())

    def still_valid(self, principal: Principal) -> bool:
        return True


def test_sr43_logged_peer_values_are_escaped_and_truncated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Peer-controlled values in log lines are escaped (ESC, CR, LF) and cut to 128."""
    caplog.set_level(logging.DEBUG, logger="safe_rpc")
    rpc = make_rpc(keyring=_FakeKeyring())

    @rpc.method(scopes=["admin"])
    def secret() -> int:
        return 1

    assert error_code(rpc, request(HOSTILE_NAME, [])) == -32001  # anonymous: inventory hidden
    assert error_code(rpc, request("secret"), token="good") == -32601
    logged = [r.getMessage() for r in caplog.records]
    assert any("lacks a scope" in line for line in logged)
    for line in logged:
        assert "\x1b" not in line
        assert "\r" not in line
        assert "\n" not in line
        assert "A" * 129 not in line
    escaped = log_safe(HOSTILE_NAME)
    assert escaped.startswith("'\\x1b[31mfake\\r\\nINFO")
    assert escaped.endswith("...")
    assert "A" * 101 in escaped
    assert "A" * 102 not in escaped
    assert_still_serving(rpc)


def test_sr43_tokens_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Neither a valid nor a forged token string appears in any log record."""
    caplog.set_level(logging.DEBUG)
    keyring = Keyring.generate(audience="core-tests")
    rpc = make_rpc(keyring=keyring)

    @rpc.method(scopes=["read"])
    def whoami(ctx: Context) -> str:
        assert ctx.principal is not None
        return ctx.principal.subject

    good = keyring.issue("alice", ["read"])
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert answer(rpc, request("whoami"), token=good)["result"] == "alice"
    assert error_code(rpc, request("whoami"), token=forged) == -32001
    assert error_code(rpc, request("add", [1, 2]), token=forged) == -32001
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert good not in text
    assert forged not in text
    assert good.split(".")[2] not in text
    assert_still_serving(rpc)


def _returns_bytes() -> str:
    return b"x"  # type: ignore[return-value]


def _returns_nan() -> float:
    return math.nan


def _returns_huge() -> int:
    return 10**5000


def _returns_surrogate() -> str:
    return "\ud800"


def _returns_wrong_type() -> int:
    return "not an int"  # type: ignore[return-value]


def _returns_object() -> Any:
    return object()


def _returns_something_for_none() -> None:
    return 1  # type: ignore[return-value]


@pytest.mark.parametrize(
    "handler",
    [
        _returns_bytes,
        _returns_nan,
        _returns_huge,
        _returns_surrogate,
        _returns_wrong_type,
        _returns_object,
        _returns_something_for_none,
    ],
)
def test_sr44_unserialisable_results_are_internal_errors(handler: Any) -> None:
    """A result its annotation cannot carry as strict JSON is -32603; the server lives on."""
    rpc = make_rpc()
    rpc.method(name="bad", public=True)(handler)
    assert timed_code(rpc, request("bad")) == -32603
    assert_still_serving(rpc)


def test_sr44_handler_exceptions_are_contained() -> None:
    """Any handler exception, even RecursionError or MemoryError-like, is -32603."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def recurse() -> int:
        def down(n: int) -> int:
            return down(n + 1)

        return down(0)

    @rpc.method(public=True)
    def zero() -> float:
        return 1 / 0

    assert error_code(rpc, request("recurse")) == -32603
    assert error_code(rpc, request("zero")) == -32603
    assert_still_serving(rpc)
