"""``safe-rpc call URL METHOD [ARGS...]``: call a method and print its result as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._client import Client
from .._core.errors import ConfigError, RPCError, TransportError
from .._core.json import JSONError, dumps_strict
from .._core.limits import ARGUMENT_JSON
from . import CLIError, subcommand

HELP = """\
Call METHOD on the server at URL (http, https, tcp or tls) and print the result as JSON.
Arguments are JSON values; write name=value to pass them by name.

examples:
  safe-rpc call http://127.0.0.1:8000/ add 2 3
  safe-rpc call http://127.0.0.1:8000/ notes.add text='"hello"' --token-file dev.token
  safe-rpc call tcp://127.0.0.1:9000 stats.mean '[1.5, 2.5]'
"""


def add_parser(subparsers: Any) -> None:
    parser = subcommand(subparsers, "call", "call a method and print the result", HELP, run)
    parser.add_argument("url", help="server URL, e.g. http://127.0.0.1:8000/")
    parser.add_argument("method", help="method name, e.g. account.balance")
    parser.add_argument("args", nargs="*", help="JSON values, or name=JSON for named ones")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--token", help="bearer token (visible in the process list!)")
    group.add_argument("--token-file", help="file holding the bearer token")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")


def _value(text: str) -> Any:
    try:
        return ARGUMENT_JSON.loads(text)
    except JSONError:
        # A bare word is a convenience for strings: hello means "hello".
        if text and text[0] not in '[{"-0123456789' and text not in ("true", "false", "null"):
            return text
        raise CLIError(f"{text!r} is not a JSON value (quote strings: '\"text\"')") from None


def parse_arguments(items: list[str]) -> tuple[list[Any], dict[str, Any]]:
    positional: list[Any] = []
    named: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if sep and name.isidentifier():
            named[name] = _value(value)
        else:
            positional.append(_value(item))
    if positional and named:
        raise CLIError("pass arguments by position or by name, not both")
    return positional, named


def run(args: argparse.Namespace) -> int:
    positional, named = parse_arguments(args.args)
    token = args.token
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CLIError(f"cannot read {args.token_file}: {exc.strerror}") from None
    try:
        with Client(args.url, token=token, timeout=args.timeout) as client:
            result = client.call(args.method, *positional, **named)
    except ConfigError as exc:  # a URL the client cannot use
        raise CLIError(str(exc)) from None
    except RPCError as exc:
        # The server's message and data are untrusted text: json.dumps escapes control
        # characters (and non-ASCII), so they cannot drive the terminal.
        data = f" {json.dumps(exc.data_for_wire())}" if exc.data is not None else ""
        print(f"error {exc.code}: {json.dumps(exc.message)}{data}"[:2000], file=sys.stderr)
        return 1
    except TransportError as exc:
        raise CLIError(f"{exc}", status=3) from None
    print(dumps_strict(result).decode())
    return 0
