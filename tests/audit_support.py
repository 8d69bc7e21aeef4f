"""Run ASGI apps (peers, the broken server, safe_rpc) on 127.0.0.1 in a thread, and audit
them in process."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from safe_rpc import Limits, RPCServer
from safe_rpc._audit.budget import Budget
from safe_rpc._audit.checks import SUITES, Options
from safe_rpc._audit.engine import AuditResult, run_audit
from safe_rpc._audit.transports import make_transport, parse_target

sys.path.insert(0, str(Path(__file__).parent / "apps"))

#: Fast settings for tests: a high rate and short connection-probe bounds.
FAST: dict[str, Any] = {"slow_timeout": 1.5, "recover_timeout": 2.0}


def calculator(limits: Limits | None = None, **options: Any) -> RPCServer:
    """A safe_rpc server with one public method, ``add(a, b)``, the audits call."""
    rpc = RPCServer(limits=limits or Limits(), **options)

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    return rpc


@contextmanager
def running_asgi(app: Any, **config: Any) -> Iterator[tuple[int, uvicorn.Server]]:
    """Serve ``app`` on 127.0.0.1:0 with uvicorn in a thread; yield (port, server)."""
    options = {"lifespan": "off", "log_level": "critical", "access_log": False, **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port, server
    finally:
        server.should_exit = True
        thread.join(15)


def audit(
    url: str,
    suites: Sequence[str] = SUITES,
    *,
    max_requests: int = 1000,
    token: str | None = None,
    cafile: str | None = None,
    **options: Any,
) -> AuditResult:
    """Run the audit engine against ``url`` at a high rate with short probe bounds."""
    transport = make_transport(
        parse_target(url, cafile=cafile), Budget(max_requests, 1000.0), token=token, timeout=10.0
    )
    return run_audit(transport, Options(**{**FAST, **options}), suites)


def verdicts(result: AuditResult) -> dict[str, str]:
    return {o.check.id: o.verdict for o in result.outcomes}


def not_passed(result: AuditResult) -> dict[str, str]:
    """Check id -> verdict for every check that did not pass or was skipped as opt-in."""
    return {o.check.id: o.verdict for o in result.outcomes if o.verdict in ("fail", "warn")}
