"""Operating a server: observers and their records, the access log, metrics, tracing,
lifespan. Above the core, below the transports (which report into it)."""

from .access import ACCESS_LOGGER, AccessLog
from .lifespan import Lifespan, LifespanError, running
from .metrics import PrometheusMetrics
from .record import CallRecord, Observer, ObserverSet, incoming_traceparent
from .tracing import OpenTelemetry

__all__ = [
    "ACCESS_LOGGER",
    "AccessLog",
    "CallRecord",
    "Lifespan",
    "LifespanError",
    "Observer",
    "ObserverSet",
    "OpenTelemetry",
    "PrometheusMetrics",
    "incoming_traceparent",
    "running",
]
