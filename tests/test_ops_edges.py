"""Edges of the operations layer: readiness answers of every shape, lifespans that yield
the wrong thing or swallow an error, metrics and spans for records the HTTP tests do not
produce, and observers of events that fail."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safe_rpc import RPCServer
from safe_rpc._ops.health import is_ready
from safe_rpc._ops.lifespan import LifespanError, running
from safe_rpc._ops.metrics import PrometheusMetrics
from safe_rpc._ops.record import CallRecord, ObserverSet, error_code
from safe_rpc._ops.tracing import OpenTelemetry


def _record(**fields: Any) -> CallRecord:
    base: dict[str, Any] = {
        "method": "add", "subject": None, "transport": "http", "client": None,
        "error_code": None, "duration": 0.001, "request_bytes": 10, "response_bytes": 10,
        "batch_size": 1,
    }  # fmt: skip
    return CallRecord(**{**base, **fields})


def test_readiness_of_every_shape() -> None:
    async def ready_async() -> bool:
        return True

    async def not_ready_async() -> bool:
        return False

    def broken() -> bool:
        raise ConnectionError("store down")

    assert asyncio.run(is_ready(None)) is True
    assert asyncio.run(is_ready(lambda: True)) is True
    assert asyncio.run(is_ready(ready_async)) is True
    assert asyncio.run(is_ready(not_ready_async)) is False
    assert asyncio.run(is_ready(broken)) is False
    truthy: Any = lambda: "yes"  # noqa: E731
    assert asyncio.run(is_ready(truthy)) is False  # only True is ready


def test_lifespan_yielding_a_non_mapping_is_refused_and_closed() -> None:
    closed: list[bool] = []

    @asynccontextmanager
    async def lifespan(rpc: Any) -> AsyncIterator[Any]:
        yield ["not", "a", "mapping"]
        closed.append(True)

    async def main() -> None:
        async with running(RPCServer(), lifespan):
            pass

    with pytest.raises(LifespanError, match="must yield a mapping"):
        asyncio.run(main())
    assert closed == [True]


def test_lifespan_that_suppresses_an_error_clears_the_state() -> None:
    rpc = RPCServer()

    @asynccontextmanager
    async def lifespan(rpc: Any) -> AsyncIterator[dict[str, int]]:
        with contextlib.suppress(KeyError):  # swallowed: the block's error goes no further
            yield {"pool": 1}

    async def main() -> int:
        async with running(rpc, lifespan):
            seen = rpc.state["pool"]
            raise KeyError("boom")
        return seen  # pragma: no cover - the lifespan swallowed the error before this

    asyncio.run(main())
    assert dict(rpc.state) == {}


def test_metrics_count_limit_refusals_and_ignore_other_events() -> None:
    metrics = PrometheusMetrics()
    metrics(_record(error_code=-32010))  # a batch over max_batch
    metrics(_record(error_code=-32601))  # not a limit
    metrics.on_event("something_else", "http")
    metrics.close()  # never served: nothing to stop
    value = metrics.registry.get_sample_value
    assert value("safe_rpc_refusals_total", {"limit": "max_batch"}) == 1.0
    assert (
        value("safe_rpc_calls_total", {"method": "add", "code": "-32601", "transport": "http"})
        == 1.0
    )


def test_span_for_a_notification_has_no_request_id() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenTelemetry(provider)(_record(request_id=None, started_at=1.0))
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert "rpc.jsonrpc.request_id" not in span.attributes
    assert span.attributes["rpc.method"] == "add"


def test_error_code_of_a_malformed_error_prefix_is_none() -> None:
    assert error_code(b'{"jsonrpc":"2.0","error":{"code":x,') is None
    assert error_code(b'{"jsonrpc":"2.0","error":{"code":-32600,') == -32600


def test_failing_event_listener_is_logged_and_the_rest_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, str]] = []

    class Broken:
        def __call__(self, record: CallRecord) -> None:
            pass

        def on_event(self, kind: str, label: str) -> None:
            raise RuntimeError("listener bug")

    class Good:
        def __call__(self, record: CallRecord) -> None:
            pass

        def on_event(self, kind: str, label: str) -> None:
            seen.append((kind, label))

    observers = ObserverSet([Broken(), Good()])
    with caplog.at_level(logging.ERROR, "safe_rpc.ops"):
        observers.event("auth_failed", "tcp")
    assert seen == [("auth_failed", "tcp")]
    assert "<locals>.Broken failed" in caplog.text  # the observer, not "method"
