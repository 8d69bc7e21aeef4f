"""Prometheus metrics, served on their own listener (never on the RPC port).

Needs the ``metrics`` extra (``pip install "safe-rpc[metrics]"``: prometheus-client).
``safe-rpc serve --metrics 127.0.0.1:9100`` or, in code::

    metrics = PrometheusMetrics(rpc)      # installs itself as an observer of rpc
    metrics.serve("127.0.0.1", 9100)      # its own HTTP listener, in a thread

Label values come only from fixed sets: ``method`` is a registered name or ``_other`` (a
name from the wire never creates a time series), ``code`` is ``ok`` or an error code the
server itself produced, ``transport`` and ``limit`` are names from this library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .._core.errors import ConfigError
from .gauges import OPEN_CONNECTIONS
from .record import CallRecord

if TYPE_CHECKING:
    from .._core.pipeline import Pipeline

__all__ = ["LIMIT_OF_CODE", "PrometheusMetrics"]

#: Error codes that mean "a limit refused this call", and the ``Limits`` field behind each.
LIMIT_OF_CODE: Final = {
    -32002: "call_timeout",
    -32004: "auth_failures_per_minute",
    -32007: "max_request_bytes",
    -32008: "max_response_bytes",
    -32009: "max_inflight",
    -32010: "max_batch",
}
_TRANSPORTS: Final = ("http", "tcp", "websocket")
# Latency buckets (seconds): a dispatch takes tens of microseconds, handlers much longer.
_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class PrometheusMetrics:
    """An observer that keeps the metrics of one server (see README "Metrics").

    Args:
        rpc: the server to observe (the observer installs itself) and whose in-flight
            count is exported; None to install it yourself.
        registry: the ``prometheus_client.CollectorRegistry`` to register in (default: a
            new one, so two servers in one process never collide).
    """

    def __init__(self, rpc: Pipeline | None = None, *, registry: Any = None) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ConfigError(
                'metrics need the metrics extra: pip install "safe-rpc[metrics]"'
            ) from None
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        self._server: Any = None
        # The labelled children per (method, code, transport): labels() costs a lock and a
        # tuple per call, a dict lookup does not.
        self._series: dict[tuple[str | None, int | None, str], tuple[Any, Any]] = {}
        self._prom = prom
        r = self.registry
        self.calls = prom.Counter(
            "safe_rpc_calls", "Calls finished, by method and outcome.",
            ["method", "code", "transport"], registry=r,
        )  # fmt: skip
        self.latency = prom.Histogram(
            "safe_rpc_call_duration_seconds", "Time to handle one call, by method.",
            ["method"], buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.auth_failures = prom.Counter(
            "safe_rpc_auth_failures", "Failed authentications, by transport.",
            ["transport"], registry=r,
        )  # fmt: skip
        self.refusals = prom.Counter(
            "safe_rpc_refusals", "Requests refused by a limit, by the Limits field.",
            ["limit"], registry=r,
        )  # fmt: skip
        self.connections = prom.Gauge(
            "safe_rpc_open_connections", "Connections open now, by transport.",
            ["transport"], registry=r,
        )  # fmt: skip
        for transport in _TRANSPORTS:
            self.connections.labels(transport).set_function(
                lambda t=transport: OPEN_CONNECTIONS[t]  # type: ignore[misc]
            )
        self.inflight = prom.Gauge(
            "safe_rpc_inflight", "Handler calls running now.", registry=r
        )  # fmt: skip
        if rpc is not None:
            self.inflight.set_function(lambda: getattr(rpc, "inflight", 0))
            rpc.add_observer(self)  # type: ignore[attr-defined]

    def __call__(self, record: CallRecord) -> None:
        if record.refused:  # refused before dispatch: counted from its event, not a call
            return
        key = (record.method, record.error_code, record.transport)
        series = self._series.get(key)
        if series is None:  # bounded: registered names x codes the server makes x transports
            method = record.method or "_other"
            code = "ok" if record.error_code is None else str(record.error_code)
            series = self.calls.labels(method, code, record.transport), self.latency.labels(method)
            self._series[key] = series
        series[0].inc()
        series[1].observe(record.duration)
        limit = LIMIT_OF_CODE.get(record.error_code) if record.error_code is not None else None
        if limit is not None:
            self.refusals.labels(limit).inc()

    def on_event(self, kind: str, label: str) -> None:
        if kind == "auth_failed":
            self.auth_failures.labels(label).inc()
        elif kind == "refused":
            self.refusals.labels(label).inc()

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the bound address."""
        server, _ = self._prom.start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        address = server.server_address
        return str(address[0]), int(address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
