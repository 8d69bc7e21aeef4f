"""``safe-rpc serve MODULE:ATTR``: serve an ``RPCServer`` over HTTP (and TCP).

Every flag has a ``SAFE_RPC_*`` environment variable (``OPTIONS`` below is the one table,
printed by ``--help`` and copied in the README); a flag given on the command line wins over
the variable. Repeatable flags take a comma-separated list in the environment.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from typing import Any

from .._core.errors import ConfigError
from .._serving.serve import HTTPOptions, build_app, check_numbers, run_workers, serve
from . import CLIError, subcommand

#: flag, environment variable, kind ("str", "int", "float", "list", "bool"), metavar, help.
OPTIONS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "--http",
        "SAFE_RPC_HTTP",
        "str",
        "HOST:PORT",
        "HTTP address HOST:PORT (default 127.0.0.1:8000)",
    ),
    ("--tcp", "SAFE_RPC_TCP", "str", "HOST:PORT", "framed TCP address HOST:PORT (off by default)"),
    ("--keys", "SAFE_RPC_KEY_FILE", "str", "FILE", "key file to verify tokens with (auth on)"),
    (
        "--ssl-certfile",
        "SAFE_RPC_SSL_CERTFILE",
        "str",
        "FILE",
        "serve HTTPS/TLS with this certificate",
    ),
    ("--ssl-keyfile", "SAFE_RPC_SSL_KEYFILE", "str", "FILE", "private key of the certificate"),
    ("--workers", "SAFE_RPC_WORKERS", "int", "N", "HTTP worker processes (default 1)"),
    (
        "--store",
        "SAFE_RPC_STORE",
        "str",
        "URL",
        "shared state: memory, sqlite:///PATH, redis://HOST:PORT/DB, rediss://...",
    ),
    ("--allow-host", "SAFE_RPC_ALLOW_HOSTS", "list", "NAME", "Host name accepted besides loopback"),
    (
        "--allow-origin",
        "SAFE_RPC_ALLOW_ORIGINS",
        "list",
        "ORIGIN",
        "Origin accepted (others get 403)",
    ),
    (
        "--cors-origin",
        "SAFE_RPC_CORS_ORIGINS",
        "list",
        "ORIGIN",
        "browser origin sent CORS headers",
    ),
    (
        "--trusted-proxy",
        "SAFE_RPC_TRUSTED_PROXIES",
        "list",
        "ADDRESS",
        "proxy whose X-Forwarded-For counts",
    ),
    (
        "--health-path",
        "SAFE_RPC_HEALTH_PATH",
        "str",
        "PATH",
        "liveness path (default /healthz; '' off)",
    ),
    (
        "--ready-path",
        "SAFE_RPC_READY_PATH",
        "str",
        "PATH",
        "readiness path (default /readyz; '' off)",
    ),
    ("--access-log", "SAFE_RPC_ACCESS_LOG", "str", "FORMAT", "json, text or off (default off)"),
    (
        "--metrics",
        "SAFE_RPC_METRICS",
        "str",
        "HOST:PORT",
        "Prometheus listener HOST:PORT (own port)",
    ),
    ("--otel", "SAFE_RPC_OTEL", "bool", "", "OpenTelemetry server spans (1/true to enable)"),
    (
        "--no-websocket",
        "SAFE_RPC_NO_WEBSOCKET",
        "bool",
        "",
        "no WebSocket on the HTTP port (1/true; handshakes refused)",
    ),
    (
        "--grace",
        "SAFE_RPC_GRACE",
        "float",
        "SECONDS",
        "seconds in-flight calls get on shutdown (10)",
    ),
    ("--log-level", "SAFE_RPC_LOG_LEVEL", "str", "LEVEL", "debug, info or warning (default info)"),
)

_DEFAULTS: dict[str, Any] = {
    "workers": 1,
    "grace": 10.0,
    "log_level": "info",
    "access_log": "off",
    "health_path": "/healthz",
    "ready_path": "/readyz",
}

HELP = """\
Serve the RPCServer found at MODULE:ATTR over HTTP (default 127.0.0.1:8000), with
WebSocket on the same port and path (ws://, or wss:// with a certificate).

Binding an address other than loopback needs a keyring (--keys FILE, or one set on the
server in code); every limit comes from the server's Limits. Each flag can also be set by
its SAFE_RPC_* environment variable (shown in brackets); the flag wins.
--workers N serves HTTP only (TCP and --metrics need one process: run them separately).

--store URL keeps revocations, quotas, failed-authentication counts and single-use token
ids where every process sees them: sqlite:///PATH for the workers of one host,
redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://... for a fleet. --workers N > 1 needs
one. The store must answer at startup (otherwise: one line, exit status 2).

examples:
  safe-rpc serve examples.calculator:rpc
  SAFE_RPC_KEY_FILE=keys.json safe-rpc serve examples.bank:rpc --http 0.0.0.0:8443 \\
      --ssl-certfile cert.pem --ssl-keyfile key.pem --allow-host bank.example.com \\
      --trusted-proxy 10.0.0.2 --access-log json --metrics 127.0.0.1:9100
  safe-rpc serve examples.bank:rpc --keys keys.json --workers 4 --store sqlite:///state.db
"""


def add_parser(subparsers: Any) -> None:
    parser = subcommand(subparsers, "serve", "serve an RPCServer over HTTP/TCP", HELP, run)
    parser.add_argument("target", metavar="MODULE:ATTR", help="where the RPCServer is")
    for flag, env, kind, metavar, text in OPTIONS:
        help_text = f"{text} [{env}]"
        if kind == "list":
            parser.add_argument(flag, action="append", metavar=metavar, help=help_text)
        elif kind == "bool":
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(flag, metavar=metavar, help=help_text)


def settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Flag, else environment variable, else default; typed and checked."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for flag, name, kind, _, _ in OPTIONS:
        key = flag[2:].replace("-", "_")
        value = getattr(args, key)
        source = flag
        if value is None and env.get(name, "") != "":
            value, source = env[name], name
            if kind == "list":
                value = [item.strip() for item in value.split(",") if item.strip()]
        if value is None:
            out[key] = _DEFAULTS.get(key, [] if kind == "list" else None)
            continue
        out[key] = _typed(value, kind, source)
    if out["log_level"] not in ("debug", "info", "warning"):
        raise CLIError(f"--log-level must be debug, info or warning (got {out['log_level']!r})")
    if out["access_log"] not in ("json", "text", "off"):
        raise CLIError(f"--access-log must be json, text or off (got {out['access_log']!r})")
    for path in ("health_path", "ready_path"):
        if out[path] == "":
            out[path] = None  # '' turns the probe off
        elif out[path] is not None and not out[path].startswith("/"):
            raise CLIError(f"--{path.replace('_', '-')} must start with / (got {out[path]!r})")
    return out


def _typed(value: Any, kind: str, source: str) -> Any:
    if kind == "bool":
        if value is True:
            return True
        lowered = str(value).strip().lower()
        if lowered not in ("1", "true", "yes", "0", "false", "no"):
            raise CLIError(f"{source} must be 1/true/yes or 0/false/no (got {value!r})")
        return lowered in ("1", "true", "yes")
    if kind in ("int", "float"):
        try:
            number = int(value) if kind == "int" else float(value)
        except ValueError:
            raise CLIError(f"{source} must be a number (got {value!r})") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise CLIError(f"{source} must be a finite number (got {value!r})")
        return number
    return value


def run(args: argparse.Namespace) -> int:
    s = settings(args)
    logging.basicConfig(level=s["log_level"].upper(), format="%(levelname)s %(name)s: %(message)s")
    check_numbers(grace=s["grace"], workers=s["workers"])
    options = HTTPOptions(
        allowed_hosts=tuple(s["allow_host"]),
        allowed_origins=tuple(s["allow_origin"]) if s["allow_origin"] else None,
        cors_origins=tuple(s["cors_origin"]),
        trusted_proxies=tuple(s["trusted_proxy"]),
        health_path=s["health_path"],
        ready_path=s["ready_path"],
        access_log=s["access_log"],
        otel=bool(s["otel"]),
        websocket=not s["no_websocket"],
    )
    if s["workers"] > 1:
        for flag in ("tcp", "metrics"):
            if s[flag]:
                # One TCP listener (or metrics registry) per process would be a different
                # service per worker; say so instead of silently serving less.
                raise ConfigError(
                    f"--{flag} needs a single process: drop --workers or run "
                    f"`safe-rpc serve --{flag} ...` as a separate process"
                )
        app = build_app(args.target, keys=s["keys"], options=HTTPOptions(), store=s["store"])
        run_workers(
            app.rpc,
            target=args.target,
            workers=s["workers"],
            http=s["http"],
            keys=s["keys"],
            ssl_certfile=s["ssl_certfile"],
            ssl_keyfile=s["ssl_keyfile"],
            options=options,
            grace=s["grace"],
            log_level=s["log_level"],
            store=s["store"],
        )
        return 0
    app = build_app(args.target, keys=s["keys"], options=HTTPOptions())
    serve(
        app.rpc,
        # HTTP on its default address unless only --tcp was asked for.
        http=s["http"] or (None if s["tcp"] else "127.0.0.1:8000"),
        tcp=s["tcp"],
        ssl_certfile=s["ssl_certfile"],
        ssl_keyfile=s["ssl_keyfile"],
        allowed_hosts=options.allowed_hosts,
        allowed_origins=options.allowed_origins,
        cors_origins=options.cors_origins,
        trusted_proxies=options.trusted_proxies,
        health_path=options.health_path,
        ready_path=options.ready_path,
        access_log=options.access_log,
        metrics=s["metrics"],
        otel=options.otel,
        websocket=options.websocket,
        grace=s["grace"],
        log_level=s["log_level"],
        store=s["store"],
    )
    return 0
