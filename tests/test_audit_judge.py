"""How the audit reads answers: matching (JSON-RPC 2.0 §5, §6), leak detection (SR-42) and
escaping of peer text, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from safe_rpc._audit.judge import ANY, EVIDENCE_MAX, Answer, clip, interpret, leaks, match, show
from safe_rpc._audit.transports import Reply


def answer(value: Any) -> Answer:
    return interpret(Reply(json.dumps(value).encode(), status=200))


def ok(value: Any, id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": value, "id": id}


def err(code: int, id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": "m"}, "id": id}


def test_batch_answers_match_in_any_order() -> None:
    expected = [ok(ANY, "1"), err(-32600, None), err(-32601, "5")]
    assert match(expected, answer([err(-32601, "5"), ok(7, "1"), err(-32600, None)])) is None
    problem = match(expected, answer([err(-32601, "5"), ok(7, "1")]))
    assert problem is not None
    assert problem.startswith("2 answers, expected 3")


@pytest.mark.parametrize(
    ("got", "problem"),
    [
        (ok(5, True), "id 'true', expected '1'"),  # a boolean is not the number 1
        (ok(5, 1.0), None),  # JSON has one number type
        ({"jsonrpc": "2.0", "result": 5, "error": {"code": 1}, "id": 1}, "has both"),
        ({"result": 5, "id": 1}, 'jsonrpc member is not "2.0"'),
        (ok(6, 1), "result '6', expected '5'"),
        (err(-32601, 1), "error -32601, expected a result"),
    ],
)
def test_single_answer_problems(got: Any, problem: str | None) -> None:
    found = match(ok(5, 1), answer(got))
    assert found == problem if problem is None else (found is not None and problem in found)


def test_no_answer_and_non_json() -> None:
    assert match(None, interpret(Reply(None, status=204))) is None
    assert match(None, answer(err(-32601, None))) is not None
    crashed = interpret(Reply(b"Internal Server Error", status=500))
    assert crashed.kind == "crashed"
    assert interpret(Reply(None, closed=True)).kind == "crashed"
    assert interpret(Reply(b"<html>", status=404)).kind == "refused"
    assert interpret(Reply(b"x" * 10, truncated=True)).kind == "oversized"


def test_not_strict_answers_are_still_read() -> None:
    """A server echoing a huge integer or NaN still gave a JSON-RPC answer."""
    huge = b"[123456789012345678901234]"
    raw = b'{"jsonrpc":"2.0","error":{"code":-32600,"message":"m","data":' + huge + b'},"id":null}'
    assert interpret(Reply(raw, status=200)).kind == "json"


def test_leaks() -> None:
    marker = "safe_rpc_audit_nonexistent_abc"
    trace = {
        "error": {
            "code": -32700,
            "message": "Parse error",
            "data": "Expecting ',' delimiter: line 1 column 5 (char 4)",
        }
    }
    assert leaks(trace, marker) is not None
    echo = {"error": {"code": -32601, "message": "Method not found", "data": marker}}
    found = leaks(echo, marker)
    assert found is not None
    assert found.startswith("caller input echoed")
    fixed = {
        "error": {
            "code": -32602,
            "message": "Invalid params",
            "data": [{"loc": ["a"], "msg": "Field required"}],
        }
    }
    assert leaks(fixed, marker) is None


def test_peer_text_is_escaped_and_clipped() -> None:
    text = show(b"\x1b[2J\r\nforged line \xff" + b"A" * 500)
    assert "\x1b" not in text
    assert "\n" not in text
    assert len(text) <= 4 * 80 + 5  # 80 characters, each escaped to at most 4, quotes, ...
    assert text.endswith("...")
    assert len(clip("x" * 1000)) == EVIDENCE_MAX


def test_audit_imports_no_server_code() -> None:
    """The auditor never depends on the code it may be auditing: safe_rpc._audit imports
    only the sans-IO core (and itself)."""
    import ast
    from pathlib import Path

    import safe_rpc._audit

    package = Path(safe_rpc._audit.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.module is None or node.module.split(".")[0] in (
                    "_core",
                    "budget",
                    "cases",
                    "checks",
                    "engine",
                    "judge",
                    "probes",
                    "report",
                    "transports",
                ), (path.name, node.module)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                )
                assert not any(str(n).startswith("safe_rpc") for n in names), path.name
