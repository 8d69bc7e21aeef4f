"""What a check is, what it knows, and the conformance and strict-JSON suites.

A check has an id, the rule it comes from, the transports it applies to, a description of
what it sends (``--dry-run`` prints it) and a ``run`` that talks to the target only through
``Context.transport``. The checks are built from the tables in ``cases``: the JSON-RPC
2.0 examples and envelope rules, the strict-JSON probes and the hostile corpus.

Production safety: a method a server implements is only ever called when the user named it
(``--method`` with ``--params``); every other probe calls ``Options.probe``, a random name
that cannot exist, or sends a malformed message.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .cases import (
    ENVELOPE_RULES,
    NONEXISTENT,
    SPEC_EXAMPLES,
    SPEC_METHODS,
    SPEC_RULES,
    STRICT_JSON,
    STRICTNESS_REJECTS,
)
from .judge import ANY, Answer, Verdict, error_code, interpret, match, show
from .transports import Transport

__all__ = ["SUITES", "Check", "Context", "Options", "conformance_checks", "strict_json_checks"]

SUITES: Final = ("conformance", "strict-json", "hostile", "limits")
ALL_KINDS: Final = frozenset({"http", "tcp", "ws"})


def probe_name() -> str:
    """A method name no server implements (random per run; not under the reserved rpc.)."""
    return f"safe_rpc_audit_nonexistent_{secrets.token_hex(6)}"


@dataclass
class Options:
    """What the user asked for; ``probe`` is the nonexistent method every probe calls."""

    method: str | None = None
    params: Any = None
    expect: Any = ANY
    probe: str = field(default_factory=probe_name)
    slow_timeout: float = 35.0
    probe_invalid_params: bool = False
    corpus: Path | None = None
    #: Check ids (or id prefixes) not to run.
    skip: tuple[str, ...] = ()
    #: Seconds a server that stopped answering gets to recover before the rest is skipped.
    recover_timeout: float = 30.0


@dataclass
class Context:
    transport: Transport
    options: Options

    def send(self, data: bytes, *, notification: bool = False) -> Answer:
        return interpret(self.transport.exchange(data, notification=notification))


@dataclass(frozen=True)
class Check:
    id: str
    suite: str
    rule: str
    sends: str
    run: Callable[[Context], Verdict]
    kinds: frozenset[str] = ALL_KINDS
    slow: bool = False  # a connection-level probe bounded by --slow-timeout


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _verdict(problem: str | None, ok: str, severity: str = "fail") -> Verdict:
    return Verdict("pass", ok) if problem is None else Verdict(severity, problem)


def _passed(answer: Answer) -> str:
    return answer.describe() if answer.kind != "none" else "no answer, as due"


# -- conformance: the specification's examples ------------------------------------------------


def _adapt_example(raw: bytes, expected: Any, options: Options) -> tuple[bytes, Any] | None:
    """The example with its methods replaced: ones that do not exist by the probe name,
    ones a server implements by the user's ``--method`` (None when none was given)."""
    probe = options.probe
    try:
        value = json.loads(raw)
    except ValueError:
        # Invalid JSON: no method in it can run; rename them all to be sure.
        for name in sorted(SPEC_METHODS | NONEXISTENT, key=len, reverse=True):
            raw = raw.replace(b'"' + name.encode(), b'"' + probe.encode())
        return raw, expected
    calls: set[Any] = set()
    for element in value if isinstance(value, list) else [value]:
        method = element.get("method") if isinstance(element, dict) else None
        if method in NONEXISTENT:
            element["method"] = probe
        elif method in SPEC_METHODS:
            if options.method is None:
                return None
            element["method"] = options.method
            element.pop("params", None)
            if options.params is not None:
                element["params"] = options.params
            calls.add(json.dumps(element.get("id")))
    if expected is not None:
        for entry in expected if isinstance(expected, list) else [expected]:
            if "result" in entry and json.dumps(entry["id"]) in calls:
                entry["result"] = options.expect
    return json.dumps(value).encode(), expected


def _spec_check(name: str, raw: bytes, expected: Any, options: Options) -> Check:
    adapted = _adapt_example(raw, copy.deepcopy(expected), options)
    rule = SPEC_RULES[name]
    if adapted is None:
        skip = Verdict("skip", "calls a real method: pass --method and --params to run it")
        return Check(
            f"c.spec.{_slug(name)}", "conformance", rule, "(needs --method)", lambda c: skip
        )
    data, want = adapted
    notification = want is None

    def run(ctx: Context) -> Verdict:
        answer = ctx.send(data, notification=notification)
        return _verdict(match(want, answer), _passed(answer))

    return Check(f"c.spec.{_slug(name)}", "conformance", rule, show(data), run)


def _envelope_check(value: Any, valid: bool, rule: str, severity: str, options: Options) -> Check:
    if isinstance(value, dict) and value.get("method") == "m":
        value = {**value, "method": options.probe}
    data = json.dumps(value).encode()
    section = rule.split()[0]
    has_id = isinstance(value, dict) and "id" in value
    expected: Any
    ids: list[Any] = [None]
    if valid:
        expected = _error(-32601, value["id"]) if has_id else None
        ids = [value["id"]] if has_id else ids
    else:
        expected = _error(-32600, None)
        request_id = value.get("id") if isinstance(value, dict) else None
        if _valid_id(request_id):
            ids.append(request_id)  # echoing an id that was readable is fine

    def run(ctx: Context) -> Verdict:
        answer = ctx.send(data, notification=expected is None)
        problem = match(expected, answer, ids={0: ids})
        params_first = not valid and "params" in rule
        if problem and params_first and error_code(answer.value) in (-32601, -32602):
            # The method was looked up before params were checked: cannot be told apart
            # from an order of checks without calling a real method.
            return Verdict("warn", f"{problem} (params not checked before the method)")
        return _verdict(problem, _passed(answer), severity)

    slug = _slug(rule.split(" ", 1)[1])
    return Check(f"c.env.{slug}", "conformance", f"JSON-RPC 2.0 {section}", show(data), run)


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (type(value) in (int, float) and value == int(value))


def _error(code: int, id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": ""}, "id": id}


def conformance_checks(options: Options) -> list[Check]:
    checks = [_spec_check(n, raw, exp, options) for n, raw, exp in SPEC_EXAMPLES]
    checks += [_envelope_check(*case, options) for case in ENVELOPE_RULES]
    return checks


# -- strict JSON --------------------------------------------------------------------------------

_REFUSALS: Final = (-32700, -32600)


def judge_refusal(answer: Answer, severity: str) -> Verdict:
    """A server must refuse a message that is not strict JSON, and keep serving."""
    code = error_code(answer.value) if answer.kind == "json" else None
    if answer.kind == "refused" or code in _REFUSALS:
        return Verdict("pass", f"refused: {answer.describe()}")
    if answer.kind == "json" and isinstance(answer.value, list):
        return Verdict(severity, f"parsed it (a batch answer): {answer.describe()}")
    if code == -32603:
        return Verdict(severity, f"an internal error, not a refusal: {answer.describe()}")
    if answer.kind == "json":
        return Verdict(severity, f"parsed it: {answer.describe()}")
    return Verdict("fail", f"no JSON-RPC answer (SR-12): {answer.describe()}")


def strict_json_checks(options: Options) -> list[Check]:
    checks = []
    for probe in STRICT_JSON:
        data = probe.template.replace(b"@", options.probe.encode())

        def run(ctx: Context, data: bytes = data, severity: str = probe.severity) -> Verdict:
            return judge_refusal(ctx.send(data), severity)

        checks.append(Check(f"s.{probe.name}", "strict-json", probe.rule, show(data), run))
    if options.corpus is not None:
        checks += _corpus_checks(options.corpus)
    return checks


def corpus_files(directory: Path, prefix: str) -> list[Path]:
    """The JSONTestSuite ``test_parsing`` files starting with ``prefix`` under ``directory``
    (the suite's root or its test_parsing folder)."""
    folder = directory / "test_parsing" if (directory / "test_parsing").is_dir() else directory
    return sorted(p for p in folder.glob(f"{prefix}*.json") if p.is_file())


def _corpus_checks(directory: Path) -> list[Check]:
    def run_n(ctx: Context) -> Verdict:
        return _corpus_run(ctx, corpus_files(directory, "n_"), must_refuse=True)

    def run_y(ctx: Context) -> Verdict:
        return _corpus_run(ctx, corpus_files(directory, "y_"), must_refuse=False)

    where = show(str(directory), 60)
    return [
        Check("s.corpus-n", "strict-json", "RFC 8259, SR-11", f"each n_*.json of {where}", run_n),
        Check("s.corpus-y", "strict-json", "RFC 8259", f"each y_*.json of {where}", run_y),
    ]


def _corpus_run(ctx: Context, files: list[Path], *, must_refuse: bool) -> Verdict:
    if not files:
        return Verdict("skip", "no JSONTestSuite files there")
    wrong: list[str] = []
    crashed: list[str] = []
    for path in files:
        data = path.read_bytes()
        if not data and ctx.transport.target.kind != "http":
            continue  # an empty frame or message is a framing error, not JSON
        answer = ctx.send(data)
        refused = answer.kind == "refused" or (
            answer.kind == "json" and error_code(answer.value) == -32700
        )
        if answer.kind not in ("json", "refused", "none"):
            crashed.append(path.name)
        elif refused != must_refuse:
            wrong.append(path.name)
    if crashed:
        return Verdict("fail", f"{len(crashed)} with no JSON-RPC answer: {show(crashed, 120)}")
    strict = [name for name in wrong if name in STRICTNESS_REJECTS]
    wrong = [name for name in wrong if name not in STRICTNESS_REJECTS or must_refuse]
    if wrong:
        what = "parsed" if must_refuse else "refused as a parse error"
        return Verdict(
            "fail" if must_refuse else "warn",
            f"{len(wrong)}/{len(files)} {what}: {show(wrong, 120)}",
        )
    note = f" ({len(strict)} refused for I-JSON strictness, RFC 7493)" if strict else ""
    return Verdict(
        "pass", f"{len(files)} files, all {'refused' if must_refuse else 'parsed'}{note}"
    )
