"""Subcommands of the ``safe-rpc`` command line, one module each."""

from __future__ import annotations

__all__ = ["COMMANDS", "CLIError"]

#: Module names under ``safe_rpc._commands``, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = ()


class CLIError(Exception):
    """A mistake the user can fix; printed as one line, exit status ``status``."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status
