"""``safe-rpc revoke``: revoke a token, a key or a subject in a running fleet's store."""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime
from typing import Any, Final

from .._core.errors import ConfigError
from .._store.base import Store, StoreUnavailable
from .._store.url import store_from_url
from . import CLIError, subcommand

HELP = """\
Revoke in the store that the servers share: every server on it refuses the token within
Limits.revocation_staleness (1 s), and the revocation survives restarts (SQLite, Redis).

  --jti ID --until EXP      one token, by its jti; EXP is its exp claim (kept until then)
  --kid KID                 every token signed with a key (a leaked key)
  --subject SUB [--before TIME]
                            every token of SUB issued before TIME (default: now):
                            "sign out everywhere"

TIME and EXP are seconds since the epoch or ISO 8601 (2026-12-01T12:00:00+00:00).

examples:
  safe-rpc revoke --store redis://redis.internal:6379/0 --kid k1
  safe-rpc revoke --store sqlite:///state.db --subject alice
  safe-rpc revoke --store sqlite:///state.db --jti 3Xb...Q --until 1764590400
"""

#: A jti revocation is kept this long past the token's exp, beyond any sensible leeway.
KEEP_AFTER_EXP: Final = 300
_ID: Final = re.compile(r"[\x21-\x7e]{1,256}")


def add_parser(subparsers: Any) -> None:
    parser = subcommand(
        subparsers, "revoke", "revoke a token, key or subject fleet-wide", HELP, run
    )
    parser.add_argument("--store", required=True, metavar="URL", help="the servers' --store")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--jti", metavar="ID", help="a token id (needs --until)")
    what.add_argument("--kid", metavar="KID", help="a key id")
    what.add_argument("--subject", metavar="SUB", help="a subject (with --before)")
    parser.add_argument("--until", metavar="EXP", help="the token's exp (with --jti)")
    parser.add_argument("--before", metavar="TIME", help="issued before (with --subject)")


def parse_time(text: str, flag: str) -> float:
    try:
        return float(int(text)) if text.isdigit() else datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        raise CLIError(f"{flag} {text!r} is neither epoch seconds nor ISO 8601") from None


def open_store(url: str) -> Store:
    if url == "memory":
        raise CLIError(
            "the memory store lives inside one server process; give the servers' "
            "--store URL (sqlite:///PATH or redis://...)"
        )
    try:
        store = store_from_url(url)
        store.ping()
    except (ConfigError, StoreUnavailable) as exc:
        raise CLIError(str(exc)) from None
    return store


def run(args: argparse.Namespace) -> int:
    value: str = args.jti or args.kid or args.subject
    if not _ID.fullmatch(value):
        raise CLIError("the id must be 1-256 printable ASCII characters without spaces")
    if args.jti is not None:
        if args.until is None:
            raise CLIError("--jti needs --until EXP (the token's exp claim)")
        kind, until = "jti", parse_time(args.until, "--until") + KEEP_AFTER_EXP
    elif args.kid is not None:
        kind, until = "kid", None
    else:
        kind = "sub"
        until = parse_time(args.before, "--before") if args.before else time.time()
    if (args.until is not None and kind != "jti") or (args.before is not None and kind != "sub"):
        raise CLIError("--until goes with --jti, --before with --subject")
    store = open_store(args.store)
    try:
        store.revoke(kind, value, until)
    except StoreUnavailable as exc:
        raise CLIError(f"not revoked: {exc}") from None
    finally:
        store.close()
    noun = {"jti": "jti", "kid": "kid", "sub": "subject"}[kind]
    print(f"revoked {noun} {value} in {store.describe()}")
    return 0
