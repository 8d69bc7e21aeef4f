"""``safe-rpc serve MODULE:ATTR``: serve an ``RPCServer`` over HTTP (and TCP)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from .._serving.serve import build_app, run_workers, serve
from . import subcommand

HELP = """\
Serve the RPCServer found at MODULE:ATTR over HTTP (default 127.0.0.1:8000), with
WebSocket on the same port and path (ws://, or wss:// with a certificate).

Binding an address other than loopback needs a keyring (--keys FILE, or one set on the
server in code); every limit comes from the server's Limits.

examples:
  safe-rpc serve examples.calculator:rpc
  safe-rpc serve examples.bank:rpc --keys keys.json --http 0.0.0.0:8443 \\
      --ssl-certfile cert.pem --ssl-keyfile key.pem --allow-host bank.example.com
"""


def add_parser(subparsers: Any) -> None:
    parser = subcommand(subparsers, "serve", "serve an RPCServer over HTTP/TCP", HELP, run)
    parser.add_argument("target", metavar="MODULE:ATTR", help="where the RPCServer is")
    parser.add_argument("--http", metavar="HOST:PORT", help="HTTP address (127.0.0.1:8000)")
    parser.add_argument("--tcp", metavar="HOST:PORT", help="framed TCP address (off by default)")
    parser.add_argument("--keys", metavar="FILE", help="key file to verify tokens with")
    parser.add_argument("--ssl-certfile", metavar="FILE", help="serve HTTPS with this cert")
    parser.add_argument("--ssl-keyfile", metavar="FILE", help="private key of the cert")
    parser.add_argument("--workers", type=int, default=1, help="HTTP worker processes")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host header name to accept besides the loopback names (repeatable)",
    )
    parser.add_argument(
        "--no-websocket",
        dest="websocket",
        action="store_false",
        help="do not serve WebSocket on the HTTP port (handshakes get 403)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser Origin allowed to open a WebSocket, e.g. https://app.example.com "
        "(repeatable; none by default, so browsers are refused)",
    )
    parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds in-flight calls get on shutdown"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    app = build_app(
        args.target,
        keys=args.keys,
        hosts=args.allow_host,
        websocket=args.websocket,
        allow_origins=args.allow_origin,
    )
    if args.workers > 1:
        run_workers(
            app.rpc,
            target=args.target,
            workers=args.workers,
            http=args.http,
            keys=args.keys,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            allowed_hosts=args.allow_host,
            grace=args.grace,
            log_level=args.log_level,
            websocket=args.websocket,
            allow_origins=args.allow_origin,
        )
        return 0
    serve(
        app.rpc,
        # HTTP on its default address unless only --tcp was asked for.
        http=args.http or (None if args.tcp else "127.0.0.1:8000"),
        tcp=args.tcp,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        allowed_hosts=args.allow_host,
        grace=args.grace,
        log_level=args.log_level,
        websocket=args.websocket,
        allow_origins=args.allow_origin,
    )
    return 0
