"""The jiter fast path of ``StrictJSON`` against the stdlib oracle (the parser it replaces).

``StrictJSON(native=False)`` is the strict parser as it was before jiter: CPython's C
scanner fenced in by checks. The fast path must take the same accept/reject decision and
produce the same value (same types, same float bits, same key order) for every input:
the JSONTestSuite corpus, the atheris seed corpora, the conformance tables, hand-written
edge cases and Hypothesis strategies; with the default limits and with tiny ones, so that
inputs near every cap reach both parsers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cases import ENVELOPES, SPEC_EXAMPLES
from hypothesis import given
from hypothesis import strategies as st
from strategies import batches, corpus_files, hostile_messages, json_values

from safe_rpc._core.json import JSONError, StrictJSON

FUZZ_CORPORA = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"
# (max_depth, max_object_members, max_array_items): the defaults, and tiny caps.
LIMIT_SETS = [(32, 1000, 10_000), (3, 2, 3)]
PAIRS = [
    tuple(
        StrictJSON(max_depth=d, max_object_members=m, max_array_items=n, native=native)
        for native in (True, False)
    )
    for d, m, n in LIMIT_SETS
]

EDGE_CASES = [
    b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}',
    b'{"a":1,"a":2}', b'{"a":1,"\\u0061":2}', b'{"a":{"b":1,"b":2}}', b'[{"x":1},{"x":1}]',
    b"\xef\xbb\xbf{}", b"NaN", b"-Infinity", b"Infinity", b"nan", b"1e400", b"-1e400",
    b"1E400", b"1e-400", b"9223372036854775807", b"9223372036854775808",
    b"-9223372036854775808", b"-9223372036854775809", b"1" * 5000, b"0.1", b"-0", b"-0.0",
    b"1.0000000000000002", b"123456789012345678.5", b"1.5E3", b"2.", b".5", b"+1", b"01",
    b'"\\ud800"', b'"\\udc00"', b'"\\ud800\\u0041"', b'"\\ud83d\\ude00"', b'"\\uD83D\\uDE00"',
    b'"\xed\xa0\x80"', b'"\xff"', b'"\xc0\xaf"', b'"\xf4\x90\x80\x80"', b'"\xef\xbf\xbf"',
    b'"a\x01"', b'"a\x7f"', b'"\\u0000"', b'"\\/"', b'"\\x"', b" \x0c1", b"\x0b1", b"1 ",
    b"\t\r\n[1]\n", b"", b" ", b"tru", b"[1,]", b"[1] x", b"{}{}", b'{"a":1,}',
    b"[" * 4 + b"]" * 4, b"[" * 33 + b"]" * 33, b"[" * 32 + b"]" * 32, b"[" * 200 + b"]" * 200,
    b'{"a":1,"b":2,"c":3}', b"[1,2,3,4]", b"[[1,2,3],[1,2,3,4]]", b'"' + b"x" * 100_000 + b'"',
    b"[" + b",".join([b"1"] * 10_001) + b"]", b"[" + b",".join([b"1"] * 10_000) + b"]",
    json.dumps({f"k{i}": i for i in range(1001)}).encode(),
    json.dumps({f"k{i}": i for i in range(1000)}).encode(),
    b'{"k:1":1}', b'["a,b,c,d,e"]', b'"[[[[[[[["', b'"1e5"', b'"0e0"',
    b'{"a":' * 32 + b"1" + b"}" * 32, b'{"a":' * 33 + b"1" + b"}" * 33,
    b'[{"a":[' * 11 + b"]}]" * 11, b'[{"a":[' * 10 + b"]}]" * 10 + b"x",
    json.dumps([{"jsonrpc": "2.0", "method": "add", "params": [i, 1], "id": i}
                for i in range(100)]).encode(),
]  # fmt: skip


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return a.hex() == b.hex() if math.isfinite(a) else repr(a) == repr(b)
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _decide(parser: StrictJSON, data: bytes) -> tuple[bool, Any]:
    try:
        return True, parser.loads(data)
    except JSONError:
        return False, None


# Past 16 KiB the fast path checks jiter's values one by one instead of testing the text:
# every input is also sent padded past that size, inside an array (one level deeper).
_PAD = b',"' + b"p" * (17 * 1024) + b'"]'


def assert_agree(data: bytes) -> None:
    for candidate in (data, b"[" + data + _PAD):
        for fast, oracle in PAIRS:
            ok, value = _decide(fast, candidate)
            expected_ok, expected = _decide(oracle, candidate)
            assert ok == expected_ok, (candidate[:200], ok)
            assert _same(value, expected), candidate[:200]


def test_fast_path_is_taken_small_and_large() -> None:
    """The differential tests below would prove nothing if jiter never ran: a small
    request takes one strict parse, a large one the lenient parse and the value checks,
    and a batch whose strings hold colons the strict parse as well."""
    parser = StrictJSON(max_depth=32, max_object_members=1000, max_array_items=10_000)
    seen: list[tuple[str, bytes]] = []
    strict, lenient = parser._native, parser._lenient
    assert strict is not None
    assert lenient is not None

    def spy(name: str, parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        def call(data: bytes) -> Any:
            seen.append((name, data))
            return parse(data)

        return call

    parser._native, parser._lenient = spy("strict", strict), spy("lenient", lenient)
    small, large = EDGE_CASES[0], b"[" + EDGE_CASES[0] + _PAD
    colons = b'[{"a":"b:c"}' + b',{"a":1}' * 40 + b"]"
    for data in (small, large, colons):
        assert parser.loads(data) == json.loads(data)
    assert seen == [
        ("strict", small), ("lenient", large), ("lenient", colons), ("strict", colons)
    ]  # fmt: skip


def test_agree_on_edge_cases() -> None:
    for data in EDGE_CASES:
        assert_agree(data)


def test_agree_on_jsontestsuite() -> None:
    files = corpus_files()
    if not files:  # where the corpus lives is the corpus helper's business
        pytest.skip("JSONTestSuite corpus not found")
    assert len(files) >= 300
    for path in files:
        assert_agree(path.read_bytes())


@pytest.mark.parametrize("target", ["parser", "dispatcher", "frames", "tokens"])
def test_agree_on_atheris_corpora(target: str) -> None:
    seeds = sorted((FUZZ_CORPORA / target).iterdir())
    assert seeds
    for path in seeds:
        data = path.read_bytes()
        assert_agree(data)
        if target == "frames":
            assert_agree(data[4:])  # past the length prefix


def test_agree_on_conformance_tables() -> None:
    for _, data, _ in SPEC_EXAMPLES:
        assert_agree(data)
    for envelope, _ in ENVELOPES:
        assert_agree(json.dumps(envelope).encode())


@given(hostile_messages())
def test_agree_on_hostile_bytes(data: bytes) -> None:
    assert_agree(data)


@given(batches.map(lambda m: json.dumps(m).encode()))
def test_agree_on_batches(data: bytes) -> None:
    assert_agree(data)


_numbers = (
    st.integers(-(2**70), 2**70).map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,4})?", fullmatch=True)
)
_escapes = st.lists(
    st.sampled_from(["a", "\\n", "\\u0041", "\\ud800", "\\udfff", "\\ud83d\\ude00", "\\u00e9"])
    | st.characters(codec="utf-8").map(lambda c: c if c not in '"\\' else "\\" + c),
    max_size=6,
).map(lambda parts: '"' + "".join(parts) + '"')


@given(_numbers)
def test_agree_on_number_literals(text: str) -> None:
    assert_agree(text.encode())
    assert_agree(f'{{"n":[{text}]}}'.encode())


@given(_escapes)
def test_agree_on_string_escapes(text: str) -> None:
    assert_agree(text.encode("utf-8", "surrogatepass"))


@given(json_values)
def test_agree_on_json_values(value: Any) -> None:
    assert_agree(json.dumps(value).encode())
    assert_agree(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
