"""``safe-rpc audit URL``: check any JSON-RPC 2.0 endpoint against the spec and attacks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._audit.budget import Budget
from .._audit.checks import SUITES, Options
from .._audit.engine import plan, run_audit
from .._audit.judge import ANY
from .._audit.report import dry_run_text, to_json, to_markdown, to_text
from .._audit.transports import SCHEMES, AuditConnectionError, make_transport, parse_target
from .._core.json import JSONError, StrictJSON
from . import CLIError, subcommand

HELP = f"""\
Run safe_rpc's conformance and hardening checks against one JSON-RPC 2.0 endpoint
(schemes: {", ".join(SCHEMES)}; tcp/tls speak safe_rpc's 4-byte length-prefixed frames).

Safe to point at a service you run: the only method it calls for real is --method (with
--params; pick one without side effects); every other probe calls a random method name
that cannot exist, or sends a malformed message. At most --max-requests requests, at
most --rate per second, connection probes bounded by --slow-timeout. --dry-run lists
every check and what it sends, and sends nothing.

Each check prints its id, the rule it comes from (JSON-RPC 2.0 section, RFC 8259, or a
SECURITY.md row SR-nn), a verdict (pass, fail, warn, skip) and one line of evidence.
Exit status: 0 every check passed (warn and skip allowed), 1 a check failed, 2 usage or
connection error.

examples:
  safe-rpc audit http://127.0.0.1:8000/ --method add --params '[2, 3]' --expect 5
  safe-rpc audit tcp://127.0.0.1:9000 --suite conformance --json
  safe-rpc audit https://rpc.example.com/ --token-file ci.token --report audit.md
"""

_ARG_JSON = StrictJSON(max_depth=32, max_object_members=1000, max_array_items=10000)


def add_parser(subparsers: Any) -> None:
    parser = subcommand(subparsers, "audit", "audit a JSON-RPC 2.0 server", HELP, run)
    parser.add_argument("url", help="the one endpoint, e.g. http://127.0.0.1:8000/")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--token", help="bearer token (visible in the process list!)")
    group.add_argument("--token-file", help="file holding the bearer token")
    parser.add_argument("--method", help="a method safe to call, for the valid-call checks")
    parser.add_argument("--params", help="JSON params for --method (array or object)")
    parser.add_argument("--expect", help="the JSON result --method must return")
    parser.add_argument(
        "--suite",
        action="append",
        choices=[*SUITES, "all"],
        help="suite to run (repeatable; default all)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--report", metavar="FILE.md", help="also write a Markdown report")
    parser.add_argument("--max-requests", type=int, default=500, help="default 500")
    parser.add_argument("--rate", type=float, default=20.0, help="requests/second (default 20)")
    parser.add_argument(
        "--slow-timeout",
        type=float,
        default=35.0,
        help="seconds each connection probe waits for the server to cut it (default 35)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per answer")
    parser.add_argument("--corpus", help="JSONTestSuite folder: also send its n_/y_ files")
    parser.add_argument("--cafile", help="CA bundle for https/tls/wss")
    parser.add_argument(
        "--probe-invalid-params",
        action="store_true",
        help="also call --method with an unknown argument to look for exception text "
        "(most frameworks refuse it before the method runs; one taking **kwargs would run)",
    )
    parser.add_argument(
        "--skip", action="append", default=[], metavar="ID", help="check id or prefix not to run"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the checks, send nothing")


def _json_arg(flag: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return _ARG_JSON.loads(text)
    except JSONError:
        raise CLIError(f"{flag} must be JSON, e.g. {flag} '[2, 3]'") from None


def _options(args: argparse.Namespace) -> Options:
    params = _json_arg("--params", args.params)
    if params is not None and not isinstance(params, list | dict):
        raise CLIError("--params must be a JSON array or object (JSON-RPC 2.0 section 4.2)")
    if (args.params or args.expect) and not args.method:
        raise CLIError("--params and --expect need --method")
    if args.max_requests < 1 or not args.rate > 0 or not args.slow_timeout > 0:
        raise CLIError("--max-requests, --rate and --slow-timeout must be positive")
    corpus = Path(args.corpus) if args.corpus else None
    if corpus is not None and not corpus.is_dir():
        raise CLIError(f"--corpus {args.corpus}: not a directory (the JSONTestSuite checkout)")
    expect = _json_arg("--expect", args.expect) if args.expect is not None else ANY
    return Options(
        method=args.method,
        params=params,
        expect=expect,
        slow_timeout=args.slow_timeout,
        probe_invalid_params=args.probe_invalid_params,
        corpus=corpus,
        skip=tuple(args.skip),
    )


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CLIError(f"cannot read {args.token_file}: {exc.strerror}") from None
    token: str | None = args.token
    return token


def _progress(suite: str, done: int, total: int) -> None:
    print(f"\r  {suite}: {done}/{total} checks ...   ", end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    suites = list(SUITES) if not args.suite or "all" in args.suite else args.suite
    suites = [s for s in SUITES if s in suites]
    options = _options(args)
    try:
        target = parse_target(args.url, cafile=args.cafile)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"cannot read --cafile: {exc}") from None
    if args.dry_run:
        print(dry_run_text(target, plan(options, suites), suites))
        return 0
    budget = Budget(args.max_requests, args.rate)
    transport = make_transport(target, budget, token=_token(args), timeout=args.timeout)
    show_progress = sys.stderr.isatty() and not args.json
    try:
        result = run_audit(transport, options, suites, _progress if show_progress else None)
    except AuditConnectionError as exc:
        raise CLIError(f"{target.url}: {exc}") from None
    finally:
        transport.close()
        if show_progress:
            print("\r" + " " * 100 + "\r", end="", file=sys.stderr, flush=True)
    print(to_json(result, suites) if args.json else to_text(result, suites))
    if args.report:
        try:
            Path(args.report).write_text(to_markdown(result, suites), encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"cannot write {args.report}: {exc.strerror}") from None
    return result.exit_status
