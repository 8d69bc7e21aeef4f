"""``safe_rpc.serve``: build, bind, TLS, worker processes and signals (no argparse here).

The command line (``safe-rpc serve``) parses flags and calls into this module; programs call
``safe_rpc.serve(rpc, ...)`` directly. Both apply the same rules.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import os
import signal
import ssl
import sys
from collections.abc import Iterable
from typing import Any

from .._auth.tokens import Keyring
from .._core.errors import ConfigError
from .._server.server import RPCServer
from .._transports.http import DEFAULT_HOSTS, ASGIApp

__all__ = [
    "build_app",
    "is_loopback",
    "load_target",
    "parse_address",
    "run_workers",
    "serve",
    "worker_app",
]


def load_target(spec: str) -> RPCServer:
    """Import ``MODULE:ATTR`` (the operator's own command line) and check it."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{spec!r} is not MODULE:ATTR (for example examples.calculator:rpc)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules in the current directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
    target = getattr(module, attr, None)
    if not isinstance(target, RPCServer):
        raise ConfigError(f"{spec!r} is not an RPCServer (found {type(target).__name__})")
    return target


def build_app(
    spec: str,
    *,
    keys: str | None,
    hosts: list[str],
    websocket: bool = True,
    allow_origins: Iterable[str] = (),
) -> ASGIApp:
    rpc = load_target(spec)
    if keys is not None:
        try:
            rpc.keyring = Keyring.from_file(keys)
        except ConfigError:
            raise
    return ASGIApp(
        rpc,
        allowed_hosts=DEFAULT_HOSTS | {h.lower() for h in hosts},
        websocket=websocket,
        allow_origins=allow_origins,
    )


def parse_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{value!r} is not HOST:PORT (for example 127.0.0.1:8000)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    rpc: RPCServer,
    *,
    http: str | None = "127.0.0.1:8000",
    tcp: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    allowed_hosts: Iterable[str] = (),
    grace: float = 10.0,
    log_level: str = "info",
    websocket: bool = True,
    allow_origins: Iterable[str] = (),
) -> None:
    """Serve ``rpc`` over HTTP (and WebSocket on the same port and path, unless
    ``websocket=False``) and/or framed TCP until SIGTERM or Ctrl-C.

    The same as ``safe-rpc serve``: binding a non-loopback address without a keyring is
    refused, ``Limits`` deadlines hold against slow clients, in-flight calls get ``grace``
    seconds to finish on shutdown. With a certificate, HTTP is HTTPS and TCP is TLS.

    Raises:
        ConfigError: for an unsafe or impossible configuration (one clear message).
    """
    if http is None and tcp is None:
        raise ConfigError("nothing to serve: give an HTTP or a TCP address")
    http_address = parse_address(http) if http else None
    tcp_address = parse_address(tcp) if tcp else None
    for address in (http_address, tcp_address):
        if address is not None:
            options = _options(
                rpc, address[0], ssl_certfile, ssl_keyfile, grace, log_level, websocket
            )
    tls = None
    if ssl_certfile and ssl_keyfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(ssl_certfile, ssl_keyfile)
    app = ASGIApp(
        rpc,
        allowed_hosts=DEFAULT_HOSTS | {h.lower() for h in allowed_hosts},
        websocket=websocket,
        allow_origins=allow_origins,
    )
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal it caught; ending with
    # status 0 tells a supervisor the shutdown was the clean one it asked for.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    asyncio.run(_serve(app, http_address, tcp_address, options, tls, grace))


def _options(
    rpc: RPCServer,
    host: str,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    grace: float,
    log_level: str,
    websocket: bool = True,
) -> dict[str, Any]:
    if not is_loopback(host) and rpc.keyring is None:
        # SR-41: an unauthenticated RPC server on a public address is how nodes get robbed.
        raise ConfigError(
            f"refusing to serve on {host} without a keyring: pass --keys FILE "
            "(make one with `safe-rpc keygen`) or bind 127.0.0.1"
        )
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together")
    from .._transports.engine import config_options

    tls = {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile} if ssl_certfile else {}
    return {
        **config_options(rpc.limits, websocket=websocket),
        **tls,
        "timeout_graceful_shutdown": max(1, round(grace)),
        "log_level": log_level,
    }


def _auth_state(rpc: RPCServer) -> str:
    return "on" if rpc.keyring is not None else "off (public methods only)"


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _serve(
    app: ASGIApp,
    http: tuple[str, int] | None,
    tcp: tuple[str, int] | None,
    options: dict[str, Any],
    tls: ssl.SSLContext | None,
    grace: float,
) -> None:
    from .._transports.tcp import TCPServer

    auth = _auth_state(app.rpc)
    tcp_server = None
    if tcp is not None:
        tcp_server = TCPServer(app.rpc, ssl=tls)
        _, port = await tcp_server.start(*tcp)
        print(f"safe_rpc: listening on {'tls' if tls else 'tcp'}://{tcp[0]}:{port}/ auth {auth}")
    try:
        if http is not None:
            await _serve_http(app, http, options, "https" if tls else "http", auth)
        else:
            await _until_signalled()
    finally:
        if tcp_server is not None:
            await tcp_server.close(grace)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve_http(
    app: ASGIApp, address: tuple[str, int], options: dict[str, Any], scheme: str, auth: str
) -> None:
    import uvicorn

    host, port = address
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        if serving.done():
            return serving.result()  # startup failed (port in use...): uvicorn logged why
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    print(f"safe_rpc: listening on {scheme}://{host}:{bound[1]}/ auth {auth}", flush=True)
    if app.websocket is not None:
        ws = "wss" if scheme == "https" else "ws"
        print(f"safe_rpc: WebSocket on {ws}://{host}:{bound[1]}/ (same port and path)", flush=True)
    await serving
    return None


def run_workers(
    rpc: RPCServer,
    *,
    target: str,
    workers: int,
    http: str | None,
    keys: str | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    allowed_hosts: list[str],
    grace: float,
    log_level: str,
    websocket: bool = True,
    allow_origins: Iterable[str] = (),
) -> None:
    """Serve ``target`` over HTTP in ``workers`` processes (each re-imports it)."""
    import uvicorn

    host, port = parse_address(http or "127.0.0.1:8000")
    options = _options(rpc, host, ssl_certfile, ssl_keyfile, grace, log_level, websocket)
    # Each worker process rebuilds the app from these (worker_app below).
    os.environ.update(
        SAFE_RPC_SERVE_TARGET=target,
        SAFE_RPC_SERVE_KEYS=keys or "",
        SAFE_RPC_SERVE_HOSTS=",".join(allowed_hosts),
        SAFE_RPC_SERVE_WEBSOCKET="1" if websocket else "",
        SAFE_RPC_SERVE_ORIGINS=" ".join(allow_origins),
    )
    scheme = "https" if ssl_certfile else "http"
    print(f"safe_rpc: {workers} workers on {scheme}://{host}:{port}/ auth {_auth_state(rpc)}")
    uvicorn.run(
        "safe_rpc._serving.serve:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **options,
    )


def worker_app() -> Any:
    """The app of one worker process under ``--workers N`` (uvicorn imports it by name).

    The worker re-imports the user's ``MODULE:ATTR`` and key file from the environment
    that ``safe-rpc serve`` set for it; nothing else crosses the process boundary.
    """
    return build_app(
        os.environ["SAFE_RPC_SERVE_TARGET"],
        keys=os.environ.get("SAFE_RPC_SERVE_KEYS") or None,
        hosts=[h for h in os.environ.get("SAFE_RPC_SERVE_HOSTS", "").split(",") if h],
        websocket=bool(os.environ.get("SAFE_RPC_SERVE_WEBSOCKET", "1")),
        allow_origins=os.environ.get("SAFE_RPC_SERVE_ORIGINS", "").split(),
    )
