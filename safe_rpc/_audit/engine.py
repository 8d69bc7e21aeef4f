"""Running an audit: plan the checks, run them through the budget, keep the server honest.

Before any check the engine sends one request for a method that cannot exist: a target
that does not answer it as JSON-RPC is a usage or connection error (exit status 2), not a
list of failures. After every hostile input, and after any failed check, it asks again;
a server that stops answering fails the check that stopped it and the rest are skipped.
Connection-level probes (``Check.slow``) run side by side, each bounded by
``--slow-timeout``, so the limits suite takes about one bound, not one per probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .budget import BudgetExhausted
from .checks import SUITES, Check, Context, Options, conformance_checks, strict_json_checks
from .judge import Answer, Verdict, clip, error_code
from .probes import hostile_checks, limits_checks
from .transports import AuditConnectionError, Target, Transport

__all__ = ["AuditResult", "Outcome", "plan", "run_audit"]

Progress = Callable[[str, int, int], None]

_BUILDERS: dict[str, Callable[[Options], list[Check]]] = {
    "conformance": conformance_checks,
    "strict-json": strict_json_checks,
    "hostile": hostile_checks,
    "limits": limits_checks,
}


@dataclass
class Outcome:
    check: Check
    verdict: str
    evidence: str
    seconds: float = 0.0


@dataclass
class AuditResult:
    target: Target
    outcomes: list[Outcome] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0

    def count(self, verdict: str) -> int:
        return sum(1 for o in self.outcomes if o.verdict == verdict)

    @property
    def exit_status(self) -> int:
        return 1 if self.count("fail") else 0


def plan(options: Options, suites: Sequence[str]) -> list[Check]:
    """Every check of ``suites``, in report order."""
    return [check for suite in SUITES if suite in suites for check in _BUILDERS[suite](options)]


def ping(ctx: Context) -> Answer:
    """One call to the nonexistent probe method: any JSON-RPC answer means alive."""
    data = f'{{"jsonrpc":"2.0","method":"{ctx.options.probe}","id":"safe_rpc_audit_ping"}}'
    return ctx.send(data.encode())


def check_reachable(ctx: Context) -> None:
    """Raise ``AuditConnectionError`` unless the target answers JSON-RPC at all."""
    answer = ping(ctx)
    # 401/403, or -32001 (safe_rpc's Unauthenticated, also sent over TCP): every check would
    # measure the authentication layer, not the server.
    if answer.status in (401, 403) or error_code(answer.value) == -32001:
        raise AuditConnectionError(
            f"the server wants a credential: {answer.describe()}; pass --token or --token-file"
        )
    if answer.kind != "json":
        raise AuditConnectionError(
            f"the target did not answer a JSON-RPC request: {answer.describe()}; "
            "check the URL (scheme, port and path)"
        )


def _alive(ctx: Context) -> bool:
    try:
        return ping(ctx).kind == "json"
    except AuditConnectionError:
        return False


def _recovered(ctx: Context) -> float | None:
    """Seconds until the server answered again (0.0: at once), None if it did not within
    ``recover_timeout``. A server that is busy with a costly input gets time to finish."""
    started = time.monotonic()
    if _alive_or_skip(ctx):
        return 0.0
    while not _alive_or_skip(ctx):
        if time.monotonic() - started > ctx.options.recover_timeout:
            return None
        time.sleep(1.0)
    return max(time.monotonic() - started, 0.001)


def _run_one(ctx: Context, check: Check) -> Outcome:
    started = time.monotonic()
    try:
        verdict = check.run(ctx)
    except BudgetExhausted:
        verdict = Verdict("skip", "request budget used up (raise --max-requests)")
    except AuditConnectionError as exc:
        verdict = Verdict("fail", f"server unreachable: {exc}")
    return Outcome(check, verdict.verdict, clip(verdict.evidence), time.monotonic() - started)


def run_audit(
    transport: Transport,
    options: Options,
    suites: Sequence[str],
    progress: Progress | None = None,
) -> AuditResult:
    """Run the checks of ``suites`` against ``transport``'s target."""
    ctx = Context(transport, options)
    started = time.monotonic()
    result = AuditResult(transport.target)
    check_reachable(ctx)
    checks = plan(options, suites)
    outcomes: dict[str, Outcome] = {}
    dead: str | None = None
    kind = transport.target.kind
    for index, check in enumerate(checks):
        if progress is not None:
            progress(check.suite, index, len(checks))
        if kind not in check.kinds:
            outcomes[check.id] = Outcome(check, "skip", f"does not apply to {kind}")
        elif dead is not None:
            outcomes[check.id] = Outcome(
                check, "skip", f"the server stopped answering after {dead}"
            )
        elif any(check.id.startswith(prefix) for prefix in options.skip):
            outcomes[check.id] = Outcome(check, "skip", "skipped by --skip")
        elif not check.slow:
            outcome = _run_one(ctx, check)
            outcomes[check.id] = outcome
            if check.suite == "hostile" or outcome.verdict == "fail":
                took = _recovered(ctx)
                if took is None:
                    outcome.verdict = "fail"
                    outcome.evidence = clip(f"the server stopped answering: {outcome.evidence}")
                    dead = check.id
                elif took > 0:
                    outcome.verdict = "fail"
                    note = f"the server did not answer for {took:.0f} s after this (SR-45)"
                    outcome.evidence = clip(f"{note}: {outcome.evidence}")
    slow = [c for c in checks if c.slow and c.id not in outcomes]
    if slow:
        if progress is not None:
            bound = f"{len(slow)} connection probes, up to {options.slow_timeout:g} s"
            progress(f"limits ({bound})", len(checks) - len(slow), len(checks))
        with ThreadPoolExecutor(max_workers=len(slow)) as pool:
            for outcome in pool.map(lambda c: _run_one(ctx, c), slow):
                outcomes[outcome.check.id] = outcome
        if _recovered(ctx) is None:
            for check in slow:
                outcomes[check.id].verdict = "fail"
                outcomes[check.id].evidence = "the server stopped answering after the slow probes"
    transport.close()
    result.outcomes = [outcomes[c.id] for c in checks]
    result.requests = transport.budget.used
    result.seconds = time.monotonic() - started
    return result


def _alive_or_skip(ctx: Context) -> bool:
    """Alive, or we may not ask (budget used up: the skipped checks will say so)."""
    try:
        return _alive(ctx)
    except BudgetExhausted:
        return True
