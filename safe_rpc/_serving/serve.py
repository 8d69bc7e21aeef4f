"""``safe_rpc.serve``: build, bind, TLS, worker processes and signals (no argparse here).

The command line (``safe-rpc serve``) parses flags and the ``SAFE_RPC_*`` environment and
calls into this module; programs call ``safe_rpc.serve(rpc, ...)`` directly. Both apply the
same rules, and every mistake an operator can make at startup (a port in use, an unreadable
certificate, a nonsensical number, a lifespan that fails) is a ``ConfigError`` with one line
that names the cause: the command line prints it and exits with status 2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Iterable
from typing import Any, Literal

from .._auth.tokens import Keyring
from .._core.errors import ConfigError
from .._ops.access import ACCESS_LOGGER, AccessLog
from .._ops.health import Readiness
from .._server.server import RPCServer
from .._store.base import Store, StoreUnavailable
from .._store.url import store_from_url
from .._transports.http import DEFAULT_HOSTS, ASGIApp

__all__ = [
    "HTTPOptions",
    "attach_store",
    "check_workers",
    "build_app",
    "is_loopback",
    "load_target",
    "parse_address",
    "run_workers",
    "serve",
    "worker_app",
]

AccessLogFormat = Literal["json", "text", "off"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class HTTPOptions:
    """The ``ASGIApp`` options ``serve`` and ``safe-rpc serve`` pass through (JSON-able, so
    worker processes receive them through the environment)."""

    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] | None = None
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    health_path: str | None = "/healthz"
    ready_path: str | None = "/readyz"
    access_log: AccessLogFormat = "off"
    otel: bool = False
    websocket: bool = True

    def app(self, rpc: RPCServer, readiness: Readiness | None = None) -> ASGIApp:
        try:
            return ASGIApp(
                rpc,
                allowed_hosts=DEFAULT_HOSTS | {h.lower() for h in self.allowed_hosts},
                allowed_origins=self.allowed_origins,
                cors_origins=self.cors_origins,
                trusted_proxies=self.trusted_proxies,
                health_path=self.health_path,
                ready_path=self.ready_path,
                readiness=readiness,
                websocket=self.websocket,
            )
        except ValueError as exc:  # a bad proxy address, a '*' origin
            raise ConfigError(str(exc)) from None


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


def attach_store(rpc: RPCServer, store: Store | str | None) -> None:
    """Put ``rpc`` (and its keyring) on ``store`` after checking the store answers.

    A store that cannot be used at startup (malformed URL, wrong password, unreachable) is
    a ``ConfigError``: the server does not start half-protected (``safe-rpc serve`` prints
    one line and exits 2). Outages *after* startup are handled while serving.
    """
    if store is None:
        return
    opened = isinstance(store, str)
    try:
        if isinstance(store, str):
            store = store_from_url(store, timeout=rpc.limits.store_timeout)
        store.ping()
    except StoreUnavailable as exc:
        if opened and not isinstance(store, str):
            store.close()  # opened here for nothing: its connection must not leak
        raise ConfigError(
            f"cannot use the store: {exc} (check the --store URL, its password, and that "
            "the store is running)"
        ) from None
    rpc.use_store(store)


def check_workers(rpc: RPCServer, workers: int) -> None:
    """Refuse worker processes that would each keep their own security state."""
    if workers > 1 and not rpc.store.shared:
        raise ConfigError(
            f"--workers {workers} needs a shared store, or each worker keeps its own "
            "revocations and quotas: add --store sqlite:///PATH (one host) or "
            "--store redis://HOST:6379/0 (several hosts)"
        )


def build_app(
    spec: str, *, keys: str | None, options: HTTPOptions, store: str | None = None
) -> ASGIApp:
    rpc = load_target(spec)
    if keys is not None:
        rpc.keyring = Keyring.from_file(keys)
    attach_store(rpc, store)
    install_observers(rpc, options)
    return options.app(rpc)


def install_observers(rpc: RPCServer, options: HTTPOptions) -> None:
    """The access log and OpenTelemetry spans, as the options ask (each worker does this)."""
    if options.otel:
        from .._ops.tracing import OpenTelemetry

        rpc.add_observer(OpenTelemetry())
    fmt = options.access_log
    if fmt == "off":
        return
    if fmt not in ("json", "text"):
        raise ConfigError(f"--access-log must be json, text or off (got {fmt!r})")
    rpc.add_observer(AccessLog(fmt))
    # One record per line on stderr, exactly as formatted (no level/name prefix).
    access = logging.getLogger(ACCESS_LOGGER)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


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


def check_numbers(*, grace: float, workers: int = 1) -> None:
    """Refuse values that cannot mean anything: a nonsensical value is a startup error."""
    if workers < 1:
        raise ConfigError(f"--workers must be 1 or more (got {workers})")
    if not grace >= 0:  # also refuses NaN
        raise ConfigError(f"--grace must be 0 or more seconds (got {grace})")


def tls_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """The server TLS context, with errors that name the file at fault."""
    if bool(certfile) != bool(keyfile):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together")
    if not certfile or not keyfile:
        return None
    for kind, path in (("certificate", certfile), ("key", keyfile)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot read the TLS {kind} file {path}: {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"cannot load TLS certificate {certfile} with key {keyfile}: "
            f"{exc.reason or 'not a PEM certificate and matching private key'}"
        ) from None
    return context


def bind_socket(host: str, port: int, what: str) -> socket.socket:
    """Bind a listening socket now, so a port in use is one clear error before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listener says TCP; without it Nagle and delayed ACKs add ~40 ms to every answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def serve(
    rpc: RPCServer,
    *,
    http: str | None = "127.0.0.1:8000",
    tcp: str | None = None,
    keys: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] | None = None,
    cors_origins: Iterable[str] = (),
    trusted_proxies: Iterable[str] = (),
    health_path: str | None = "/healthz",
    ready_path: str | None = "/readyz",
    readiness: Readiness | None = None,
    access_log: AccessLogFormat = "off",
    metrics: str | None = None,
    otel: bool = False,
    grace: float = 10.0,
    log_level: str = "info",
    store: Store | str | None = None,
    websocket: bool = True,
) -> None:
    """Serve ``rpc`` over HTTP (and WebSocket on the same port and path, unless
    ``websocket=False``) and/or framed TCP until SIGTERM or Ctrl-C.

    ``store`` (a ``Store`` or a URL such as ``redis://HOST:6379/0``) replaces the server's
    store; it must answer at startup.

    The same as ``safe-rpc serve``: binding a non-loopback address without a keyring is
    refused, ``Limits`` deadlines hold against slow clients, in-flight calls get ``grace``
    seconds to finish on shutdown (``ready_path`` answers 503 meanwhile). With a certificate,
    HTTP is HTTPS and TCP is TLS. The server's lifespan is entered before the first socket
    serves and left after draining. ``metrics`` is a HOST:PORT for Prometheus (its own
    listener); ``otel`` turns on OpenTelemetry server spans; ``keys`` is a key file that
    replaces the server's keyring (``SAFE_RPC_KEY_FILE`` for the command line). The other
    options are ``ASGIApp``'s.

    Raises:
        ConfigError: for an unsafe or impossible configuration, a port in use, an unreadable
            certificate or a failing lifespan (one clear message).
    """
    if http is None and tcp is None:
        raise ConfigError("nothing to serve: give an HTTP or a TCP address")
    check_numbers(grace=grace)
    if keys is not None:
        rpc.keyring = Keyring.from_file(keys)
    attach_store(rpc, store)
    # A store opened here from a URL is closed again when starting fails after it (a port
    # in use, a bad TLS file): its connection must not outlive this call.
    opened = rpc.store if isinstance(store, str) else None
    try:
        http_address = parse_address(http) if http else None
        tcp_address = parse_address(tcp) if tcp else None
        for address in (http_address, tcp_address):
            if address is not None:
                refuse_public_without_keys(rpc, address[0])
        tls = tls_context(ssl_certfile, ssl_keyfile)
        options = HTTPOptions(
            allowed_hosts=tuple(allowed_hosts),
            allowed_origins=None if allowed_origins is None else tuple(allowed_origins),
            cors_origins=tuple(cors_origins),
            trusted_proxies=tuple(trusted_proxies),
            health_path=health_path,
            ready_path=ready_path,
            access_log=access_log,
            otel=otel,
            websocket=websocket,
        )
        app = options.app(rpc, readiness)
        install_observers(rpc, options)
        # Bind everything before serving anything: a port in use is one line, not a traceback.
        http_socket = bind_socket(*http_address, "HTTP") if http_address else None
        exporter = start_metrics(rpc, metrics)
    except BaseException:
        if opened is not None:
            opened.close()
        raise
    uvicorn_options = engine_options(
        rpc, ssl_certfile, ssl_keyfile, grace, log_level, websocket=websocket
    )
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal it caught; ending with
    # status 0 tells a supervisor the shutdown was the clean one it asked for.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        asyncio.run(_serve(app, http_socket, tcp_address, uvicorn_options, tls, grace))
    finally:
        if exporter is not None:
            exporter.close()


def start_metrics(rpc: RPCServer, metrics: str | None) -> Any:
    if metrics is None:
        return None
    from .._ops.metrics import PrometheusMetrics

    host, port = parse_address(metrics)
    exporter = PrometheusMetrics(rpc)
    try:
        bound = exporter.serve(host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen for metrics on {host}:{port}: {exc.strerror}") from None
    print(f"safe_rpc: metrics on http://{host}:{bound[1]}/metrics", flush=True)
    return exporter


def refuse_public_without_keys(rpc: RPCServer, host: str) -> None:
    if not is_loopback(host) and rpc.keyring is None:
        # SR-41: an unauthenticated RPC server on a public address is how nodes get robbed.
        raise ConfigError(
            f"refusing to serve on {host} without a keyring: pass --keys FILE "
            "(make one with `safe-rpc keygen`) or bind 127.0.0.1"
        )


def engine_options(
    rpc: RPCServer,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    grace: float,
    log_level: str,
    *,
    websocket: bool = True,
) -> dict[str, Any]:
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
    http: socket.socket | None,
    tcp: tuple[str, int] | None,
    options: dict[str, Any],
    tls: ssl.SSLContext | None,
    grace: float,
) -> None:
    from .._transports.tcp import TCPServer

    auth = _auth_state(app.rpc)
    async with app.lifespan_context():  # before serving, left after draining
        tcp_server = None
        if tcp is not None:
            tcp_server = TCPServer(app.rpc, ssl=tls)
            try:
                _, port = await tcp_server.start(*tcp)
            except OSError as exc:
                raise ConfigError(
                    f"cannot listen for TCP on {tcp[0]}:{tcp[1]}: {exc.strerror}"
                ) from None
            scheme = "tls" if tls else "tcp"
            print(f"safe_rpc: listening on {scheme}://{tcp[0]}:{port}/ auth {auth}", flush=True)
        try:
            if http is not None:
                await _serve_http(app, http, options, "https" if tls else "http", auth)
            else:
                await _until_signalled()
        finally:
            app.draining = True
            if tcp_server is not None:
                await tcp_server.close(grace)
            await app.rpc.aclose()  # the revocation poller, pending store writes, the store


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve_http(
    app: ASGIApp, sock: socket.socket, options: dict[str, Any], scheme: str, auth: str
) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            app.draining = True  # /readyz answers 503 from the signal on
            super().handle_exit(sig, frame)
            # uvicorn re-raises a caught signal once it drained; here the drain *is* the
            # clean exit asked for, so serving returns normally: the lifespan is left
            # without an exception and the process ends with status 0.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    host, port = sock.getsockname()[:2]
    server = Server(uvicorn.Config(app, **options))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            return serving.result()  # startup failed: uvicorn logged why
        await asyncio.sleep(0.02)
    print(f"safe_rpc: listening on {scheme}://{host}:{port}/ auth {auth}", flush=True)
    if app.websocket is not None:
        ws = "wss" if scheme == "https" else "ws"
        print(f"safe_rpc: WebSocket on {ws}://{host}:{port}/ (same port and path)", flush=True)
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
    options: HTTPOptions,
    grace: float,
    log_level: str,
    store: str | None = None,
) -> None:
    """Serve ``target`` over HTTP in ``workers`` processes (each re-imports it)."""
    import uvicorn

    check_numbers(grace=grace, workers=workers)
    check_workers(rpc, workers)
    host, port = parse_address(http or "127.0.0.1:8000")
    refuse_public_without_keys(rpc, host)
    tls_context(ssl_certfile, ssl_keyfile)  # the same checks as one process: fail here, once
    bind_socket(host, port, "HTTP").close()  # a port in use: one line before any worker starts
    engine = engine_options(
        rpc, ssl_certfile, ssl_keyfile, grace, log_level, websocket=options.websocket
    )
    engine["lifespan"] = "on"  # each worker enters the server's lifespan (ASGIApp events)
    # Each worker process rebuilds the app from these (worker_app below).
    os.environ.update(
        SAFE_RPC_SERVE_TARGET=target,
        SAFE_RPC_SERVE_KEYS=keys or "",
        SAFE_RPC_SERVE_OPTIONS=json.dumps(dataclasses.asdict(options)),
        SAFE_RPC_SERVE_STORE=store or "",
    )
    scheme = "https" if ssl_certfile else "http"
    print(f"safe_rpc: {workers} workers on {scheme}://{host}:{port}/ auth {_auth_state(rpc)}")
    # The supervisor stops every worker when one fails to start (a failing lifespan), logs
    # why, and returns as if shut down cleanly: an error it logged makes the exit status 2.
    errors = _ErrorCounter()
    supervisor_log = logging.getLogger("uvicorn.error")
    supervisor_log.addFilter(errors)  # a filter: uvicorn's logging setup replaces handlers
    try:
        uvicorn.run(
            "safe_rpc._serving.serve:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            **engine,
        )
    finally:
        supervisor_log.removeFilter(errors)
    if errors.count:
        raise ConfigError("a worker failed to start; the reason is logged above")


class _ErrorCounter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.count += 1
        return True


def worker_app() -> Any:
    """The app of one worker process under ``--workers N`` (uvicorn imports it by name).

    The worker re-imports the user's ``MODULE:ATTR`` and key file from the environment
    that ``safe-rpc serve`` set for it; nothing else crosses the process boundary.
    """
    raw = json.loads(os.environ.get("SAFE_RPC_SERVE_OPTIONS") or "{}")
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return build_app(
        os.environ["SAFE_RPC_SERVE_TARGET"],
        keys=os.environ.get("SAFE_RPC_SERVE_KEYS") or None,
        options=HTTPOptions(**fields),
        store=os.environ.get("SAFE_RPC_SERVE_STORE") or None,
    )
