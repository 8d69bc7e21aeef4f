"""The three forms of an audit's result: terminal text, JSON, and a Markdown report.

Evidence is already escaped and clipped by the checks (``judge.show``/``clip``); the
Markdown form also escapes the table syntax so a server cannot break out of its cell.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .checks import SUITES, Check
from .engine import AuditResult
from .transports import Target

__all__ = ["dry_run_text", "to_json", "to_markdown", "to_text"]

_TAG = {"pass": "pass", "fail": "FAIL", "warn": "warn", "skip": "skip"}


def _summary(result: AuditResult) -> str:
    counts = ", ".join(f"{result.count(v)} {v}" for v in ("pass", "fail", "warn", "skip"))
    return (
        f"summary: {len(result.outcomes)} checks: {counts}; "
        f"{result.requests} requests in {result.seconds:.1f} s; exit {result.exit_status}"
    )


def _header(target: Target, suites: Sequence[str]) -> str:
    return f"safe-rpc audit of {target.url} ({target.scheme}): {', '.join(suites)}"


def to_text(result: AuditResult, suites: Sequence[str]) -> str:
    lines = [_header(result.target, suites)]
    width = max((len(o.check.id) for o in result.outcomes), default=10)
    rule_width = max((len(o.check.rule) for o in result.outcomes), default=10)
    for suite in SUITES:
        rows = [o for o in result.outcomes if o.check.suite == suite]
        if not rows:
            continue
        lines.append("")
        lines.append(suite)
        for o in rows:
            rule = f"{o.check.rule:<{rule_width}}"
            lines.append(f"  {_TAG[o.verdict]}  {o.check.id:<{width}}  {rule}  {o.evidence}")
    lines.append("")
    lines.append(_summary(result))
    return "\n".join(lines)


def to_json(result: AuditResult, suites: Sequence[str]) -> str:
    document: dict[str, Any] = {
        "target": result.target.url,
        "transport": result.target.scheme,
        "suites": list(suites),
        "checks": [
            {
                "id": o.check.id,
                "suite": o.check.suite,
                "rule": o.check.rule,
                "verdict": o.verdict,
                "evidence": o.evidence,
                "seconds": round(o.seconds, 3),
            }
            for o in result.outcomes
        ],
        "summary": {v: result.count(v) for v in ("pass", "fail", "warn", "skip")},
        "requests": result.requests,
        "seconds": round(result.seconds, 3),
        "exit": result.exit_status,
    }
    return json.dumps(document, indent=2)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("<", "&lt;")


def to_markdown(result: AuditResult, suites: Sequence[str]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# safe-rpc audit of `{_cell(result.target.url)}`",
        "",
        f"{when}; transport {result.target.scheme}; suites: {', '.join(suites)}.",
        "",
        _summary(result).replace("summary: ", "**Summary:** "),
    ]
    for suite in SUITES:
        rows = [o for o in result.outcomes if o.check.suite == suite]
        if not rows:
            continue
        lines += [
            "",
            f"## {suite}",
            "",
            "| check | rule | verdict | evidence |",
            "|---|---|---|---|",
        ]
        for o in rows:
            verdict = f"**{o.verdict}**" if o.verdict == "fail" else o.verdict
            lines.append(
                f"| `{o.check.id}` | {_cell(o.check.rule)} | {verdict} | {_cell(o.evidence)} |"
            )
    return "\n".join(lines) + "\n"


def dry_run_text(target: Target, checks: Sequence[Check], suites: Sequence[str]) -> str:
    """Every check and what it would send; nothing is sent."""
    lines = [_header(target, suites) + " (dry run: nothing is sent)"]
    width = max((len(c.id) for c in checks), default=10)
    for suite in SUITES:
        rows = [c for c in checks if c.suite == suite]
        if not rows:
            continue
        lines += ["", suite]
        for c in rows:
            applies = "" if target.kind in c.kinds else f"  [not for {target.kind}]"
            lines.append(f"  {c.id:<{width}}  {c.rule}: {c.sends}{applies}")
    lines += [
        "",
        f"{len(checks)} checks; also one call to a nonexistent method before them, after each",
        "hostile input and after any failure (is the server still answering?)",
    ]
    return "\n".join(lines)
