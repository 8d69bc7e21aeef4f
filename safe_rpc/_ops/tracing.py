"""OpenTelemetry: one server span per call, continuing the caller's W3C trace context.

Needs the ``otel`` extra (``pip install "safe-rpc[otel]"``: opentelemetry-api; you bring an
SDK and an exporter). ``safe-rpc serve --otel`` or ``rpc.add_observer(OpenTelemetry())``.

The span is built from the finished call's record, with the call's real start and end
times: it is named after the method and carries the attributes of the OpenTelemetry RPC
conventions for JSON-RPC (``rpc.system``, ``rpc.method``, ``rpc.jsonrpc.version``,
``rpc.jsonrpc.request_id``, ``rpc.jsonrpc.error_code``). Its parent is the ``traceparent``
the HTTP request carried (W3C Trace Context, validated strictly before use). Handlers do not
run inside the span: open your own spans there if you need children.
"""

from __future__ import annotations

import re
from typing import Any, Final

from .record import CallRecord

__all__ = ["OpenTelemetry", "valid_traceparent"]

# W3C Trace Context level 1, version 00: version-traceid-parentid-flags, lowercase hex.
_TRACEPARENT: Final = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_ZERO_TRACE: Final = b"0" * 32
_ZERO_PARENT: Final = b"0" * 16


def valid_traceparent(value: bytes | None) -> str | None:
    """The header value when it is a well-formed version-00 ``traceparent``, else None."""
    if value is None or len(value) != 55:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None or match[1] == _ZERO_TRACE or match[2] == _ZERO_PARENT:
        return None
    return value.decode("ascii")


class OpenTelemetry:
    """An observer that turns each ``CallRecord`` into a server span.

    Args:
        tracer_provider: the provider to take the tracer from (default: the global one).
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:
            from .._core.errors import ConfigError

            raise ConfigError(
                'OpenTelemetry needs the otel extra: pip install "safe-rpc[otel]"'
            ) from None
        from .._version import __version__

        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()
        self.tracer = trace.get_tracer("safe_rpc", __version__, tracer_provider=tracer_provider)

    def __call__(self, record: CallRecord) -> None:
        trace = self._trace
        parent = None
        if record.traceparent is not None:
            parent = self._propagator.extract({"traceparent": record.traceparent})
        attributes: dict[str, Any] = {
            "rpc.system": "jsonrpc",
            "rpc.method": record.method or "_OTHER",
            "rpc.jsonrpc.version": "2.0",
        }
        if record.request_id is not None:
            attributes["rpc.jsonrpc.request_id"] = str(record.request_id)
        if record.error_code is not None:
            attributes["rpc.jsonrpc.error_code"] = record.error_code
        start = int(record.started_at * 1e9)
        span = self.tracer.start_span(
            record.method or "_OTHER",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
            start_time=start,
        )
        if record.error_code is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR))
        span.end(end_time=start + int(record.duration * 1e9))
