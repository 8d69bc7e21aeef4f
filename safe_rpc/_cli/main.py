"""The ``safe-rpc`` command line (also ``python -m safe_rpc``).

Each subcommand lives in its own module under ``safe_rpc._cli`` with two functions:
``add_parser(subparsers)`` declares its arguments and ``run(args) -> int`` runs it. Errors a
user can fix (a bad ``MODULE:ATTR``, a missing key file) are raised as ``CLIError`` and
printed as one line on stderr with a non-zero exit status, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._core.errors import ConfigError
from . import COMMANDS, CLIError

__all__ = ["main"]

DESCRIPTION = """\
safe_rpc: a JSON-RPC 2.0 server and client that is safe on an untrusted network.

examples:
  safe-rpc serve examples.calculator:rpc            serve over HTTP on 127.0.0.1:8000
  safe-rpc keygen --out keys.json --audience calc   make a key file
  safe-rpc token --keys keys.json --subject me      issue a bearer token
  safe-rpc call http://127.0.0.1:8000/ add 2 3      call a method
  safe-rpc openrpc examples.bank:rpc --all          print the OpenRPC document
  safe-rpc stubs examples.bank:rpc --out client.py  write a typed client module
  safe-rpc audit http://127.0.0.1:8000/             check a server against the spec
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safe-rpc",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"safe-rpc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        # The command modules are a fixed list in this package, never a name from input.
        module = importlib.import_module(f"safe_rpc._cli.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except CLIError as exc:
        print(f"safe-rpc {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except ConfigError as exc:  # raised by the library for a bad configuration
        print(f"safe-rpc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
