"""``safe-rpc openrpc MODULE:ATTR``: print the server's OpenRPC document."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._serving.serve import load_target
from . import subcommand

HELP = """\
Print the OpenRPC document of the RPCServer found at MODULE:ATTR, as rpc.discover would
answer it: by default the anonymous view (public methods only); --scope adds the methods a
token with those scopes may call; --all lists every method (for documentation builds).

examples:
  safe-rpc openrpc examples.bank:rpc
  safe-rpc openrpc examples.bank:rpc --scope account:read --scope account:write
  safe-rpc openrpc examples.bank:rpc --all > bank.openrpc.json
"""


def add_parser(subparsers: Any) -> None:
    parser = subcommand(subparsers, "openrpc", "print the OpenRPC document", HELP, run)
    parser.add_argument("target", metavar="MODULE:ATTR", help="where the RPCServer is")
    parser.add_argument(
        "--scope", action="append", default=None, metavar="S", help="a scope (repeatable)"
    )
    parser.add_argument("--all", action="store_true", help="every method, whatever its scopes")


def run(args: argparse.Namespace) -> int:
    rpc = load_target(args.target)
    scopes = frozenset(args.scope) if args.scope is not None else None
    document = rpc.discovery.document(scopes, everything=args.all)
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return 0
