"""The case tables: one copy, read by ``safe-rpc audit`` and by the project's own tests.

``SPEC_EXAMPLES`` re-states every example of section 7 of the JSON-RPC 2.0 specification
(https://www.jsonrpc.org/specification#examples) as (name, request, expected response),
with the expected response as a parsed JSON value (None: no response at all).
``SPEC_RULES`` names the section each example illustrates.

``ENVELOPE_RULES`` lists single request objects with whether they are valid (JSON-RPC 2.0
section 4, schemas/request.json), the rule they illustrate and whether breaking it is a
MUST ("fail") or a SHOULD / this project's stricter reading ("warn"); ``ENVELOPES`` is the
(value, valid) view the schema tests use.

``STRICT_JSON`` are strict-JSON probes (RFC 8259) wrapped around a request for a method
that cannot exist; ``HOSTILE_FRAGMENTS`` are the byte fragments the fuzz tests splice into
messages; ``hostile_inputs`` are the 1 MiB-class inputs of benchmarks/adversarial.py.
"""

from __future__ import annotations

import json
from typing import Any, Final, NamedTuple

__all__ = [
    "ENVELOPES",
    "ENVELOPE_RULES",
    "HOSTILE_FRAGMENTS",
    "NONEXISTENT",
    "SPEC_EXAMPLES",
    "SPEC_METHODS",
    "SPEC_RULES",
    "STRICTNESS_REJECTS",
    "STRICT_JSON",
    "EnvelopeRule",
    "StrictProbe",
    "hostile_inputs",
]

MiB: Final = 1024 * 1024


def _error(code: int, message: str, id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}


def _result(value: Any, id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": value, "id": id}


#: Methods the examples call that a server implements (the tests register them).
SPEC_METHODS: Final = frozenset(
    {"subtract", "update", "sum", "notify_hello", "notify_sum", "get_data"}
)
#: Methods the examples call that, by the specification's design, do not exist.
NONEXISTENT: Final = frozenset({"foobar", "foo.get"})

SPEC_EXAMPLES: list[tuple[str, bytes, Any]] = [
    (
        "positional parameters",
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        _result(19, 1),
    ),
    (
        "positional parameters, swapped",
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        _result(-19, 2),
    ),
    (
        "named parameters",
        b'{"jsonrpc": "2.0", "method": "subtract", '
        b'"params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        _result(19, 3),
    ),
    (
        "named parameters, reordered",
        b'{"jsonrpc": "2.0", "method": "subtract", '
        b'"params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        _result(19, 4),
    ),
    ("notification", b'{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    ("notification of an unknown method", b'{"jsonrpc": "2.0", "method": "foobar"}', None),
    (
        "non-existent method",
        b'{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        _error(-32601, "Method not found", "1"),
    ),
    (
        "invalid JSON",
        b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        _error(-32700, "Parse error", None),
    ),
    (
        "invalid Request object",
        b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        _error(-32600, "Invalid Request", None),
    ),
    (
        "batch, invalid JSON",
        b'[\n  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},\n'
        b'  {"jsonrpc": "2.0", "method"\n]',
        _error(-32700, "Parse error", None),
    ),
    ("empty array", b"[]", _error(-32600, "Invalid Request", None)),
    ("invalid batch, not empty", b"[1]", [_error(-32600, "Invalid Request", None)]),
    ("invalid batch", b"[1,2,3]", [_error(-32600, "Invalid Request", None)] * 3),
    (
        "mixed batch",
        b"""[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]""",
        # Answers in request order (the spec allows any order; safe_rpc keeps the order).
        [
            _result(7, "1"),
            _result(19, "2"),
            _error(-32600, "Invalid Request", None),
            _error(-32601, "Method not found", "5"),
            _result(["hello", 5], "9"),
        ],
    ),
    (
        "batch of notifications",
        b"""[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]""",
        None,
    ),
]

#: Example name -> the sections of the specification it illustrates.
SPEC_RULES: Final[dict[str, str]] = {
    "positional parameters": "JSON-RPC 2.0 §4.2, §5",
    "positional parameters, swapped": "JSON-RPC 2.0 §4.2, §5",
    "named parameters": "JSON-RPC 2.0 §4.2, §5",
    "named parameters, reordered": "JSON-RPC 2.0 §4.2, §5",
    "notification": "JSON-RPC 2.0 §4.1",
    "notification of an unknown method": "JSON-RPC 2.0 §4.1",
    "non-existent method": "JSON-RPC 2.0 §5.1",
    "invalid JSON": "JSON-RPC 2.0 §5.1",
    "invalid Request object": "JSON-RPC 2.0 §5.1",
    "batch, invalid JSON": "JSON-RPC 2.0 §6",
    "empty array": "JSON-RPC 2.0 §6",
    "invalid batch, not empty": "JSON-RPC 2.0 §6",
    "invalid batch": "JSON-RPC 2.0 §6",
    "mixed batch": "JSON-RPC 2.0 §6",
    "batch of notifications": "JSON-RPC 2.0 §6",
}


class EnvelopeRule(NamedTuple):
    """One request object; ``severity`` is the verdict for a server that gets it wrong."""

    value: Any
    valid: bool
    rule: str
    severity: str  # "fail": a MUST of the specification; "warn": a SHOULD or stricter


ENVELOPE_RULES: list[EnvelopeRule] = [
    EnvelopeRule({"jsonrpc": "2.0", "method": "m"}, True, "§4.1 notification", "fail"),
    EnvelopeRule({"jsonrpc": "2.0", "method": "m", "id": None}, True, "§4 null id", "fail"),
    EnvelopeRule({"jsonrpc": "2.0", "method": "m", "id": 1}, True, "§4 number id", "fail"),
    EnvelopeRule({"jsonrpc": "2.0", "method": "m", "id": "x"}, True, "§4 string id", "fail"),
    # JSON has one number type: 1.0 is the number one.
    EnvelopeRule({"jsonrpc": "2.0", "method": "m", "id": 1.0}, True, "§4 id 1.0", "warn"),
    EnvelopeRule(
        {"jsonrpc": "2.0", "method": "m", "params": [], "id": 1}, True, "§4.2 params array", "fail"
    ),
    EnvelopeRule(
        {"jsonrpc": "2.0", "method": "m", "params": {}, "id": 1}, True, "§4.2 params object", "fail"
    ),
    EnvelopeRule({"jsonrpc": "2.0", "method": "", "id": 1}, True, "§4 empty method", "warn"),
    EnvelopeRule({"jsonrpc": "2.0", "method": "m", "id": 1.5}, False, "§4 fraction id", "warn"),
    EnvelopeRule({"jsonrpc": "2.0", "method": "m", "id": True}, False, "§4 bool id", "fail"),
    EnvelopeRule({"jsonrpc": "2.0", "method": "m", "id": []}, False, "§4 array id", "fail"),
    EnvelopeRule({"jsonrpc": "2.0", "method": "m", "id": {}}, False, "§4 object id", "fail"),
    EnvelopeRule(
        {"jsonrpc": "2.0", "method": "m", "params": None, "id": 1},
        False,
        "§4.2 params null",
        "warn",
    ),
    EnvelopeRule(
        {"jsonrpc": "2.0", "method": "m", "params": "x", "id": 1},
        False,
        "§4.2 params string",
        "fail",
    ),
    EnvelopeRule(
        {"jsonrpc": "2.0", "method": "m", "params": 3, "id": 1}, False, "§4.2 params number", "fail"
    ),
    EnvelopeRule({"jsonrpc": "2.1", "method": "m", "id": 1}, False, "§4 version 2.1", "fail"),
    EnvelopeRule({"jsonrpc": 2.0, "method": "m", "id": 1}, False, "§4 version number", "fail"),
    EnvelopeRule({"method": "m", "id": 1}, False, "§4 no version", "fail"),
    EnvelopeRule({"jsonrpc": "2.0", "id": 1}, False, "§4 no method", "fail"),
    EnvelopeRule({"jsonrpc": "2.0", "method": 1, "id": 1}, False, "§4 number method", "fail"),
    EnvelopeRule({"jsonrpc": "2.0", "method": None, "id": 1}, False, "§4 null method", "fail"),
    # The specification lists the members; it does not forbid others in so many words.
    EnvelopeRule(
        {"jsonrpc": "2.0", "method": "m", "id": 1, "extra": 0}, False, "§4 extra member", "warn"
    ),
    EnvelopeRule({"id": 1}, False, "§4 id only", "fail"),
    EnvelopeRule([], False, "§6 empty batch", "fail"),
    EnvelopeRule(1, False, "§4 not an object", "fail"),
    EnvelopeRule(None, False, "§4 null message", "fail"),
    EnvelopeRule("x", False, "§4 string message", "fail"),
]

#: (request object, valid per schemas/request.json and JSON-RPC 2.0 section 4)
ENVELOPES: list[tuple[Any, bool]] = [(case.value, case.valid) for case in ENVELOPE_RULES]


class StrictProbe(NamedTuple):
    """A request made invalid JSON in one way (``@`` marks the method name to put in).

    ``severity`` is the verdict for a server that parses it anyway: "fail" where RFC 8259
    forbids the text outright, "warn" where the RFC allows it but interoperability or a
    SECURITY.md row says refuse.
    """

    name: str
    rule: str
    severity: str
    template: bytes


def _req(value: bytes) -> bytes:
    # By name: a server that supports only named params still reaches the value.
    return b'{"jsonrpc":"2.0","method":"@","params":{"v":' + value + b'},"id":1}'


_DUPLICATE: Final = b'{"jsonrpc":"2.0","method":"@","id":1,"id":2}'
_DEEP: Final = b"[" * 100_000 + b"]" * 100_000

STRICT_JSON: list[StrictProbe] = [
    StrictProbe("duplicate-key", "RFC 8259 §4, SR-06", "warn", _DUPLICATE),
    StrictProbe("nan", "RFC 8259 §6, SR-07", "fail", _req(b"[NaN]")),
    StrictProbe("infinity", "RFC 8259 §6, SR-07", "fail", _req(b"[-Infinity]")),
    StrictProbe("float-overflow", "RFC 8259 §6, SR-07", "warn", _req(b"[1e400]")),
    StrictProbe("huge-int", "RFC 8259 §6, SR-08", "warn", _req(b"[1234567890123456789012345]")),
    StrictProbe("int-5000-digits", "RFC 8259 §6, SR-08", "warn", _req(b"[" + b"9" * 5000 + b"]")),
    StrictProbe("lone-surrogate", "RFC 8259 §8.2, SR-09", "warn", _req(b'["\\ud800"]')),
    StrictProbe("bom", "RFC 8259 §8.1, SR-09", "warn", b"\xef\xbb\xbf" + _req(b"[]")),
    StrictProbe("invalid-utf8", "RFC 8259 §8.1, SR-09", "fail", _req(b'["\xff"]')),
    StrictProbe("overlong-utf8", "RFC 8259 §8.1, SR-09", "fail", _req(b'["\xc0\xaf"]')),
    StrictProbe("utf8-surrogate", "RFC 8259 §8.1, SR-09", "fail", _req(b'["\xed\xa0\x80"]')),
    StrictProbe("control-char", "RFC 8259 §7, SR-11", "fail", _req(b'["a\tb"]')),
    StrictProbe("single-quotes", "RFC 8259 §7, SR-11", "fail", _req(b"['a']")),
    StrictProbe("comment", "RFC 8259 §2, SR-11", "fail", _req(b"[/*x*/1]")),
    StrictProbe("trailing-comma", "RFC 8259 §5, SR-11", "fail", _req(b"[1,]")),
    StrictProbe("leading-zero", "RFC 8259 §6, SR-11", "fail", _req(b"[01]")),
    StrictProbe("trailing-garbage", "RFC 8259 §2, SR-11", "fail", _req(b"[]") + b"x"),
    StrictProbe("deep-nesting", "RFC 8259 §9, SR-05", "warn", _req(_DEEP)),
]

#: JSONTestSuite ``y_`` files (valid JSON) that a strict server refuses on purpose (I-JSON,
#: RFC 7493 §2.3: duplicate member names); tests/test_jsontestsuite.py and --corpus use it.
STRICTNESS_REJECTS: Final = frozenset(
    {"y_object_duplicated_key.json", "y_object_duplicated_key_and_value.json"}
)

#: Byte fragments the fuzz tests splice into messages (tests/strategies.py).
HOSTILE_FRAGMENTS: list[bytes] = [
    b"\xef\xbb\xbf",  # BOM
    b"\xff",
    b"\xc3",  # truncated UTF-8 sequence
    b"\xed\xa0\x80",  # UTF-8-encoded surrogate
    b'"\\ud800"',
    b"NaN",
    b"-Infinity",
    b"1e400",
    b"123456789012345678901234567890",
    b'"a":1,"a":2',
    b"[" * 40,
    b"]" * 3,
    b"{" * 40,
    b",",
    b'"',
    b"\\",
    b"\x00",
    b"/*x*/",
]


def hostile_inputs(method: str = "add") -> dict[str, bytes]:
    """1 MiB-class inputs that cost a naive server dearly, calling ``method``.

    Keys are short names; the audit turns them into check ids.
    """
    collide = ",".join(str(k * (2**61 - 1)) for k in range(1, 20_000))
    name = json.dumps(method)
    return {
        "1,000,000 bytes of '['": b"[" * 1_000_000,
        "1 MiB array of numbers": b"[" + b"1," * (MiB // 2 - 2) + b"1]",
        "SR-10 hash-collision ints (0.5 MB)": (
            f'{{"jsonrpc":"2.0","method":{name},"params":[{collide}],"id":1}}'.encode()
        ),
        "1 MiB string": json.dumps(
            {
                "jsonrpc": "2.0",
                "method": method,
                "params": ["x" * (MiB - 77 - len(method))],
                "id": 1,
            }
        ).encode(),
        "object with 60,000 keys": json.dumps({f"k{i}": i for i in range(60_000)}).encode(),
        "'{\"a\":' x 5000": b'{"a":' * 5000,
        "unterminated string of escaped quotes": b'"' + b'\\"' * (MiB // 2 - 1),
    }
