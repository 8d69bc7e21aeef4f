"""``safe-rpc token``: issue a bearer token from a key file."""

from __future__ import annotations

import argparse
from typing import Any

from .._auth.tokens import Keyring
from .._core.errors import ConfigError
from . import CLIError, subcommand

HELP = """\
Issue a signed bearer token for SUBJECT with the given scopes, using the key file's active key.

example:
  safe-rpc token --keys keys.json --subject alice --scope account:read --ttl 900
"""


def add_parser(subparsers: Any) -> None:
    parser = subcommand(subparsers, "token", "issue a bearer token from a key file", HELP, run)
    parser.add_argument("--keys", required=True, help="key file made by `safe-rpc keygen`")
    parser.add_argument("--subject", required=True, help="who the token is for (sub claim)")
    parser.add_argument(
        "--scope", action="append", default=[], help="a scope to grant (repeat for several)"
    )
    parser.add_argument("--ttl", type=int, default=900, help="lifetime in seconds (default 900)")
    parser.add_argument(
        "--once", action="store_true", help="single-use: accepted for one message only"
    )


def run(args: argparse.Namespace) -> int:
    try:
        keyring = Keyring.from_file(args.keys)
        token = keyring.issue(args.subject, args.scope, ttl=args.ttl, once=args.once)
    except ConfigError as exc:
        raise CLIError(str(exc)) from None
    print(token)
    return 0
