"""``safe-rpc call URL METHOD [ARGS...]``: call a method and print its result as JSON."""

from __future__ import annotations

import argparse
import json
import re
import ssl
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
  safe-rpc call https://rpc.example.com/ add 2 3 --ca ca.pem
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
    parser.add_argument(
        "--ca", metavar="FILE", help="PEM file of the CA that signed the server's certificate"
    )


# RFC 6750 section 2.1 b64token: what a bearer token may contain, on one line.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def read_token_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise CLIError(f"cannot read {path}: {reason}") from None
    if not _TOKEN.fullmatch(text):
        hint = ""
        if '"keys"' in text:
            hint = f" (this is a key file: make a token with `safe-rpc token --keys {path} ...`)"
        raise CLIError(
            f"{path} is not a token file: it should hold one bearer token, as "
            f"`safe-rpc token` prints{hint}"
        )
    return text


def ca_context(path: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise CLIError(f"cannot read the CA file {path}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise CLIError(f"{path} is not a PEM CA certificate ({type(exc).__name__})") from None


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
        token = read_token_file(args.token_file)
    elif token is not None and not _TOKEN.fullmatch(token):
        raise CLIError("--token is not a bearer token (one line, as `safe-rpc token` prints)")
    context = ca_context(args.ca) if args.ca else None
    try:
        with Client(args.url, token=token, timeout=args.timeout, ssl=context) as client:
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
