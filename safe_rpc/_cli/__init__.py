"""Subcommands of the ``safe-rpc`` command line, one module each."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["COMMANDS", "CLIError", "subcommand"]

#: Module names under ``safe_rpc._cli``, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "serve",
    "call",
    "keygen",
    "token",
    "revoke",
    "revocations",
    "openrpc",
    "stubs",
    "audit",
)


class CLIError(Exception):
    """A mistake the user can fix; printed as one line, exit status ``status``."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def subcommand(
    subparsers: Any, name: str, summary: str, description: str, run: Callable[..., int]
) -> argparse.ArgumentParser:
    """Declare one subcommand whose ``--help`` shows ``description`` verbatim."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser
