"""``safe-rpc keygen``: write a new key file with one random 256-bit key."""

from __future__ import annotations

import argparse
from typing import Any

from .._auth.tokens import Keyring
from .._core.errors import ConfigError
from . import CLIError, subcommand

HELP = """\
Write a new key file (mode 0600) holding one random 256-bit HMAC key and a random key id.

example:
  safe-rpc keygen --out keys.json --audience calc
"""


def add_parser(subparsers: Any) -> None:
    parser = subcommand(subparsers, "keygen", "write a new key file", HELP, run)
    parser.add_argument("--out", required=True, help="path of the key file to create")
    parser.add_argument("--audience", required=True, help="the service name tokens are for")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> int:
    try:
        keyring = Keyring.generate(audience=args.audience)
        keyring.to_file(args.out, overwrite=args.force)
    except ConfigError as exc:  # the only ConfigError here: the file already exists
        raise CLIError(f"{exc} (use --force to replace it)") from None
    except OSError as exc:
        raise CLIError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"wrote {args.out}: audience {args.audience!r}, key id {keyring.active!r}")
    return 0
