"""``safe-rpc stubs (MODULE:ATTR | URL)``: write a typed client module."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._discovery.stubs import generate_stubs
from . import CLIError, subcommand

HELP = """\
Write a typed client module for a service: pydantic models for its schemas, its declared
errors as RPCError classes in a registry of the module's own, and a client class (sync and
async) whose methods carry the real signatures and return the declared types.

The service is either MODULE:ATTR (your own RPCServer: every method, or only those a token
with --scope S ... may call) or a URL (the document rpc.discover answers there: what
--token may see). Every name and string taken from the document is validated or escaped
before it is written, so a document from a server you do not control cannot inject code.

examples:
  safe-rpc stubs examples.bank:rpc --out bank_client.py
  safe-rpc stubs http://127.0.0.1:8000/ --token "$TOKEN" --out bank_client.py
"""


def add_parser(subparsers: Any) -> None:
    parser = subcommand(subparsers, "stubs", "write a typed client module", HELP, run)
    parser.add_argument("source", metavar="MODULE:ATTR|URL", help="the service to describe")
    parser.add_argument("--out", metavar="FILE", help="write here instead of to stdout")
    parser.add_argument("--token", help="bearer token for a URL (its scopes decide the view)")
    parser.add_argument(
        "--scope", action="append", default=None, metavar="S", help="MODULE:ATTR: only these"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds, for a URL")


def _document(args: argparse.Namespace) -> dict[str, Any]:
    if "://" in args.source:
        from .._client import Client
        from .._core.errors import RPCError, TransportError

        try:
            with Client(args.source, token=args.token, timeout=args.timeout) as client:
                return client.discover()
        except (RPCError, TransportError, ValueError) as exc:
            raise CLIError(f"cannot read the OpenRPC document at {args.source}: {exc}") from None
    if args.token is not None:
        raise CLIError("--token is for a URL; for MODULE:ATTR use --scope")
    from .._serving.serve import load_target

    rpc = load_target(args.source)
    scopes = frozenset(args.scope) if args.scope is not None else None
    return rpc.discovery.document(scopes, everything=scopes is None)


def run(args: argparse.Namespace) -> int:
    source = generate_stubs(_document(args))
    if args.out is None:
        sys.stdout.write(source)
    else:
        Path(args.out).write_text(source, encoding="utf-8")
    return 0
