"""Health and readiness probes, the Origin allow-list, metrics on their own listener,
OpenTelemetry spans continuing the client's trace."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from servers import exchange, http_request, read_response
from uvicorn_thread import running

from safe_rpc import ASGIApp, AsyncClient, Client, Context, Keyring, Limits, RPCServer
from safe_rpc._ops.health import Readiness
from safe_rpc._ops.metrics import PrometheusMetrics
from safe_rpc._ops.tracing import OpenTelemetry, valid_traceparent

ADD = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'
KEYRING = Keyring({"h": b"h" * 32}, audience="ops-http")


def make_rpc() -> RPCServer:
    limits = Limits(max_request_bytes=2048, tcp_preauth_frame_bytes=1024)
    rpc = RPCServer(keyring=KEYRING, limits=limits)

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    @rpc.method(scopes=["x"])
    def private() -> int:
        return 1

    return rpc


def get(port: int, path: str, host: str = "127.0.0.1", method: str = "GET") -> tuple[int, bytes]:
    raw = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        if method == "HEAD":  # headers only, whatever Content-Length says
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            return int(head.split(b" ", 2)[1]), head.partition(b"\r\n\r\n")[2]
        status, _, body = read_response(sock)
    return status, body


def test_healthz_and_readyz_need_no_token_and_carry_only_a_status() -> None:
    app = ASGIApp(make_rpc())
    with running(app) as port:
        # A platform probe uses the pod address as Host: the probes answer before the Host
        # check, and say nothing but a status.
        assert get(port, "/healthz", host="10.1.2.3:8000") == (200, b"ok")
        assert get(port, "/readyz") == (200, b"ok")
        assert get(port, "/healthz", method="HEAD") == (200, b"")
        assert get(port, "/other")[0] == 405  # any other GET is still refused
        app.draining = True
        assert get(port, "/readyz") == (503, b"draining")
        assert get(port, "/healthz") == (200, b"ok")
        assert exchange(port, http_request(ADD))[0] == 200  # still serving


@pytest.mark.parametrize("kind", ["sync", "async", "raises", "false", "hangs"])
def test_readiness_hook(kind: str) -> None:
    async def ahealthy() -> bool:
        return True

    async def hangs() -> bool:
        await asyncio.sleep(60)
        return True

    def raises() -> bool:
        raise ConnectionError("store down")

    hooks: dict[str, Readiness] = {
        "sync": lambda: True,
        "async": ahealthy,
        "raises": raises,
        "false": lambda: False,
        "hangs": hangs,
    }
    app = ASGIApp(make_rpc(), readiness=hooks[kind])
    expected = (200, b"ok") if kind in ("sync", "async") else (503, b"not ready")
    with running(app) as port:
        assert get(port, "/readyz") == expected
        assert exchange(port, http_request(ADD))[0] == 200


def test_probe_paths_are_configurable_and_can_be_off() -> None:
    app = ASGIApp(make_rpc(), health_path="/live", ready_path=None)
    with running(app) as port:
        assert get(port, "/live") == (200, b"ok")
        assert get(port, "/healthz")[0] == 405
        assert get(port, "/readyz")[0] == 405


def test_allowed_origins_refuse_other_browser_origins() -> None:
    app = ASGIApp(
        make_rpc(), allowed_origins=["https://app.example"], cors_origins=["https://ui.example"]
    )
    with running(app) as port:
        for origin, status in [
            ("https://app.example", 200),
            ("https://ui.example", 200),  # a CORS origin is allowed too
            ("https://evil.example", 403),
            ("", 200),  # no Origin: not a browser, unaffected
        ]:
            raw = http_request(ADD, headers={"Origin": origin})
            assert exchange(port, raw)[0] == status, origin
        assert exchange(port, http_request(ADD))[0] == 200


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_on_their_own_listener_with_bounded_labels() -> None:
    rpc = make_rpc()
    metrics = PrometheusMetrics(rpc)
    _, metrics_port = metrics.serve("127.0.0.1", 0)
    try:
        with running(ASGIApp(rpc)) as port:
            assert metrics_port != port
            token = KEYRING.issue("m", ["x"])
            with Client(f"http://127.0.0.1:{port}/", token=token) as client:
                assert client.add(1, 2) == 3
                assert client.private() == 1
            for i in range(20):  # a cardinality attack: a new method name per call
                body = f'{{"jsonrpc":"2.0","method":"m{i}","id":1}}'.encode()
                exchange(port, http_request(body, headers={"Authorization": f"Bearer {token}"}))
            exchange(port, http_request(ADD, headers={"Authorization": "Bearer bad"}))
            exchange(port, http_request(b"x" * 4096))  # over max_request_bytes: 413
            # The RPC port does not serve metrics.
            assert exchange(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 405
            text = scrape(metrics_port)
    finally:
        metrics.close()
    calls = 'safe_rpc_calls_total{code="%s",method="%s",transport="http"}'
    assert sample(text, calls % ("ok", "add")) == 1
    assert sample(text, calls % ("ok", "private")) == 1
    assert sample(text, calls % ("-32601", "_other")) == 20
    assert "m19" not in text  # no label value from the wire
    assert sample(text, 'safe_rpc_auth_failures_total{transport="http"}') == 1
    assert sample(text, 'safe_rpc_refusals_total{limit="max_request_bytes"}') == 1
    assert sample(text, 'safe_rpc_call_duration_seconds_count{method="add"}') == 1
    assert "safe_rpc_inflight 0.0" in text
    assert 'safe_rpc_open_connections{transport="http"}' in text


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory, provider
    provider.shutdown()


def test_otel_server_span_continues_the_client_trace(
    exporter: tuple[InMemorySpanExporter, TracerProvider],
) -> None:
    memory, provider = exporter
    rpc = make_rpc()
    rpc.add_observer(OpenTelemetry(tracer_provider=provider))
    tracer = provider.get_tracer("test-client")
    with running(ASGIApp(rpc)) as port:
        with (
            tracer.start_as_current_span("client-op") as parent,
            Client(f"http://127.0.0.1:{port}/") as client,
        ):
            # The client injects the current span's traceparent (opentelemetry.propagate).
            assert client.add(2, 3) == 5
            with pytest.raises(Exception, match=r"Method not found|Unauthenticated"):
                client.call("nope")
        client_context = parent.get_span_context()
    spans = {s.name: s for s in memory.get_finished_spans()}
    server = spans["add"]
    assert server.kind == trace.SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["rpc.system"] == "jsonrpc"
    assert server.attributes["rpc.method"] == "add"
    assert server.attributes["rpc.jsonrpc.request_id"] == "1"
    assert "rpc.jsonrpc.error_code" not in server.attributes
    assert server.context is not None
    assert server.context.trace_id == client_context.trace_id
    assert server.parent is not None
    assert server.parent.span_id == client_context.span_id
    other = spans["_OTHER"]
    assert other.attributes is not None
    assert other.attributes["rpc.jsonrpc.error_code"] == -32001
    assert other.status.status_code == trace.StatusCode.ERROR


def test_otel_server_span_continues_the_client_trace_over_websocket(
    exporter: tuple[InMemorySpanExporter, TracerProvider],
) -> None:
    """The WebSocket client sends ``traceparent`` with its handshake; every call on that
    connection continues the caller's trace."""
    from ws_support import running_app

    memory, provider = exporter
    rpc = make_rpc()
    rpc.add_observer(OpenTelemetry(tracer_provider=provider))
    tracer = provider.get_tracer("test-client")
    with running_app(rpc) as (_, port):
        with (
            tracer.start_as_current_span("client-op") as parent,
            Client(f"ws://127.0.0.1:{port}/", token=KEYRING.issue("alice", ["x"])) as client,
        ):
            assert client.add(2, 3) == 5
        client_context = parent.get_span_context()
    [server] = [s for s in memory.get_finished_spans() if s.name == "add"]
    assert server.kind == trace.SpanKind.SERVER
    assert server.context is not None
    assert server.context.trace_id == client_context.trace_id
    assert server.parent is not None
    assert server.parent.span_id == client_context.span_id


GOOD_TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    "value",
    [
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero parent id
        b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # uppercase
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
        GOOD_TRACEPARENT + b"\n",
        b"x" * 10_000,
        None,
    ],
)
def test_traceparent_is_validated_before_use(value: bytes | None) -> None:
    assert valid_traceparent(value) is None
    assert valid_traceparent(GOOD_TRACEPARENT) == GOOD_TRACEPARENT.decode()


def test_hostile_traceparent_is_ignored_and_the_call_served(
    exporter: tuple[InMemorySpanExporter, TracerProvider],
) -> None:
    memory, provider = exporter
    rpc = make_rpc()
    rpc.add_observer(OpenTelemetry(tracer_provider=provider))
    with running(ASGIApp(rpc)) as port:
        raw = http_request(ADD, headers={"traceparent": "00-" + "z" * 50})
        assert exchange(port, raw)[0] == 200
    [span] = memory.get_finished_spans()
    assert span.parent is None


def test_asgi_lifespan_events_run_the_server_lifespan() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(server: RPCServer) -> AsyncIterator[dict[str, str]]:
        events.append("in")
        yield {"db": "db-1"}
        events.append("out")

    rpc = RPCServer(lifespan=lifespan)

    @rpc.method(public=True)
    def db(ctx: Context) -> str:
        return str(ctx.state["db"])

    with running(ASGIApp(rpc)) as port, Client(f"http://127.0.0.1:{port}/") as client:
        assert client.db() == "db-1"
    assert events == ["in", "out"]


def test_server_readiness_is_the_default_for_its_apps() -> None:
    """RPCServer(readiness=...) is where a shared store's ping plugs in for every app."""
    state = {"up": False}
    rpc = RPCServer(readiness=lambda: state["up"])
    with running(ASGIApp(rpc)) as port:
        assert get(port, "/readyz") == (503, b"not ready")
        state["up"] = True
        assert get(port, "/readyz") == (200, b"ok")


def test_deadline_and_frame_refusals_reach_the_metrics() -> None:
    from safe_rpc import TCPServer
    from safe_rpc._transports.engine import config_options

    limits = Limits(header_timeout=0.3, tcp_preauth_frame_bytes=1024, max_request_bytes=2048)
    rpc = RPCServer(keyring=KEYRING, limits=limits)
    metrics = PrometheusMetrics(rpc)
    options = {k: v for k, v in config_options(limits).items() if k != "lifespan"}
    with running(ASGIApp(rpc), **options) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes
            assert sock.recv(100) == b""  # closed at the header deadline

        async def oversized_frame() -> None:
            server = TCPServer(rpc)
            _, tcp_port = await server.start("127.0.0.1", 0)
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
                writer.write((5000).to_bytes(4, "big"))
                await writer.drain()
                await reader.read()  # one error frame, then closed
                writer.close()
                await writer.wait_closed()
            finally:
                await server.close(1.0)

        asyncio.run(oversized_frame())
        assert exchange(port, http_request(ADD))[0] == 200
    value = metrics.registry.get_sample_value
    assert value("safe_rpc_refusals_total", {"limit": "header_timeout"}) == 1
    assert value("safe_rpc_refusals_total", {"limit": "tcp_preauth_frame_bytes"}) == 1


def test_example_dashboard_queries_only_exported_metrics() -> None:
    """examples/grafana-dashboard.json uses metric names the exporter really has."""
    import json
    import re

    from servers import REPO_ROOT

    dashboard = json.loads((REPO_ROOT / "examples" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"safe_rpc_\w+", e)}
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"]}
    exported = {
        family.name + suffix
        for family in PrometheusMetrics().registry.collect()
        for suffix in suffixes[family.type]
    }
    assert used
    assert used <= exported


def test_requests_refused_before_dispatch_are_records_too() -> None:
    """Who was refused: a bad token or an oversized body over HTTP, a bad token over TCP,
    each reach observers as one record (refused=True, method None) and the access log."""
    from safe_rpc import CallRecord, TCPServer, Unauthenticated

    records: list[CallRecord] = []
    rpc = make_rpc()
    rpc.add_observer(records.append)
    with running(ASGIApp(rpc)) as port:
        assert exchange(port, http_request(ADD, headers={"Authorization": "Bearer x"}))[0] == 401
        assert exchange(port, http_request(b"x" * 4096))[0] == 413
        assert exchange(port, http_request(ADD))[0] == 200

    async def tcp_bad_token() -> None:
        server = TCPServer(rpc)
        _, tcp_port = await server.start("127.0.0.1", 0)
        try:
            with pytest.raises(Unauthenticated):
                async with AsyncClient(f"tcp://127.0.0.1:{tcp_port}", token="x") as client:
                    await client.add(1, 2)
        finally:
            await server.close(1.0)

    asyncio.run(tcp_bad_token())
    seen = [(r.refused, r.method, r.error_code, r.transport, r.client) for r in records]
    assert seen == [
        (True, None, -32001, "http", "127.0.0.1"),
        (True, None, -32007, "http", "127.0.0.1"),
        (False, "add", None, "http", "127.0.0.1"),
        (True, None, -32001, "tcp", "127.0.0.1"),
    ]
