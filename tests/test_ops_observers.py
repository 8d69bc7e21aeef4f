"""Observers: one record per finished call, never params or results,
and an observer failure never changes a call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from strategies import hostile_messages

from safe_rpc import CallRecord, ConfigError, Context, Keyring, Limits, RPCServer
from safe_rpc._ops import AccessLog

KEYRING = Keyring({"k1": b"o" * 32}, audience="ops")


def make_server(*observers: Any) -> RPCServer:
    rpc = RPCServer(keyring=KEYRING, observers=observers, limits=Limits(max_batch=5))

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    @rpc.method(name="secret.echo", scopes=["s"])
    def echo(text: str) -> str:
        return text

    @rpc.method(public=True)
    def boom() -> int:
        raise RuntimeError("secret detail")

    return rpc


def test_one_record_per_call_with_the_spec_fields() -> None:
    records: list[CallRecord] = []
    rpc = make_server(records.append)
    token = KEYRING.issue("alice", ["s"])
    message = b'{"jsonrpc":"2.0","method":"secret.echo","params":["PARAM-VALUE"],"id":"r1"}'
    answer = rpc.dispatch(message, token=token, transport="http", client="10.0.0.9")
    assert answer is not None
    assert b"PARAM-VALUE" in answer
    [record] = records
    assert record.method == "secret.echo"
    assert record.subject == "alice"
    assert (record.transport, record.client) == ("http", "10.0.0.9")
    assert record.error_code is None
    assert record.request_bytes == len(message)
    assert record.response_bytes == len(answer)
    assert record.batch_size == 1
    assert record.request_id == "r1"
    assert 0 <= record.duration < 5
    # Never params or results: no field holds the value that went in or came out.
    assert "PARAM-VALUE" not in repr(record)
    with pytest.raises(AttributeError):
        record.method = "x"  # type: ignore[misc]  # frozen


def test_batch_gives_one_record_per_element_with_codes() -> None:
    records: list[CallRecord] = []
    rpc = make_server(records.append)
    batch = (
        b'[{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1},'
        b'{"jsonrpc":"2.0","method":"nope\\n","id":2},'
        b'{"jsonrpc":"2.0","method":"boom","id":3},'
        b'{"jsonrpc":"2.0","method":"add","params":["x",2],"id":4}]'
    )
    rpc.dispatch(batch)
    assert [(r.method, r.error_code, r.batch_size) for r in records] == [
        ("add", None, 4),
        (None, -32001, 4),  # a name that is not registered never reaches an observer
        ("boom", -32603, 4),
        ("add", -32602, 4),
    ]
    assert all("secret detail" not in repr(r) for r in records)


@pytest.mark.parametrize(
    ("message", "code"),
    [(b"{", -32700), (b"[]", -32600), (b"[" + b",".join([b"1"] * 6) + b"]", -32010)],
)
def test_message_refused_before_any_element_gives_one_record(message: bytes, code: int) -> None:
    records: list[CallRecord] = []
    make_server(records.append).dispatch(message)
    [record] = records
    assert (record.method, record.error_code, record.subject) == (None, code, None)


def test_bad_token_is_recorded_as_unauthenticated() -> None:
    records: list[CallRecord] = []
    rpc = make_server(records.append)
    rpc.dispatch(b'{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}', token="bad")
    assert [(r.method, r.error_code, r.subject) for r in records] == [("add", -32001, None)]


def test_failing_observer_never_changes_the_call_and_logs_once_per_n(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[CallRecord] = []

    def broken(record: CallRecord) -> None:
        raise ValueError("observer bug")

    rpc = make_server(broken, seen.append)
    plain = make_server()
    message = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'
    with caplog.at_level(logging.ERROR, logger="safe_rpc.ops"):
        answers = [rpc.dispatch(message) for _ in range(50)]
    assert set(answers) == {plain.dispatch(message)}
    assert len(seen) == 50  # the observer after the broken one still runs
    failures = [r for r in caplog.records if r.name == "safe_rpc.ops"]
    assert len(failures) == 1  # not one line per call: a broken observer cannot flood


def test_async_dispatch_is_observed_with_the_deadline_code() -> None:
    records: list[CallRecord] = []
    rpc = RPCServer(observers=[records.append], limits=Limits(call_timeout=0.05))

    @rpc.method(public=True)
    async def slow() -> int:
        await asyncio.sleep(5)
        return 1

    asyncio.run(rpc.dispatch_async(b'{"jsonrpc":"2.0","method":"slow","id":1}', transport="tcp"))
    assert [(r.method, r.error_code, r.transport) for r in records] == [("slow", -32002, "tcp")]


def test_notification_is_recorded_without_an_answer() -> None:
    records: list[CallRecord] = []
    make_server(records.append).dispatch(b'{"jsonrpc":"2.0","method":"add","params":[1,2]}')
    [record] = records
    assert (record.method, record.response_bytes, record.request_id) == ("add", 0, None)


def test_add_observer_later_and_no_observer_means_no_record_path() -> None:
    rpc = make_server()
    assert rpc._emit is None  # the pipeline's only check per message
    records: list[CallRecord] = []
    rpc.add_observer(records.append)
    rpc.dispatch(b'{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}')
    assert len(records) == 1
    with pytest.raises(TypeError):
        rpc.add_observer(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_access_log_lines_are_escaped_and_carry_no_params(
    fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    rpc = make_server(AccessLog(fmt))  # type: ignore[arg-type]
    token = KEYRING.issue("mallory\r\nFAKE LINE", ["s"])
    with caplog.at_level(logging.INFO, logger="safe_rpc.access"):
        rpc.dispatch(
            b'{"jsonrpc":"2.0","method":"secret.echo","params":["PARAM-VALUE"],"id":1}',
            token=token,
            client="10.1.2.3",
        )
    [line] = [r.getMessage() for r in caplog.records if r.name == "safe_rpc.access"]
    assert "\n" not in line
    assert "\r" not in line
    assert "PARAM-VALUE" not in line
    assert "secret.echo" in line
    assert "10.1.2.3" in line
    if fmt == "json":
        entry = json.loads(line)
        assert entry["subject"] == "mallory\r\nFAKE LINE"
        assert (entry["code"], entry["batch"]) == (None, 1)
    with pytest.raises(ValueError, match="json"):
        AccessLog("xml")  # type: ignore[arg-type]


def test_lifespan_state_reaches_handlers_and_is_closed() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(server: RPCServer) -> AsyncIterator[dict[str, Any]]:
        events.append("open")
        yield {"greeting": "hello"}
        events.append("closed")

    rpc = RPCServer(lifespan=lifespan)

    @rpc.method(public=True)
    def greet(ctx: Context) -> str:
        return str(ctx.state["greeting"])

    async def main() -> bytes | None:
        async with rpc.running():
            return await rpc.dispatch_async(b'{"jsonrpc":"2.0","method":"greet","id":1}')

    assert asyncio.run(main()) == b'{"jsonrpc":"2.0","result":"hello","id":1}'
    assert events == ["open", "closed"]
    assert dict(rpc.state) == {}


def test_lifespan_failure_is_one_config_error() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(server: RPCServer) -> AsyncIterator[None]:
        raise OSError("database unreachable")
        yield

    rpc = RPCServer(lifespan=lifespan)

    async def main() -> None:
        async with rpc.running():
            pass

    with pytest.raises(ConfigError, match="lifespan failed at startup: OSError"):
        asyncio.run(main())


def _observed_pair() -> tuple[RPCServer, RPCServer, list[CallRecord]]:
    records: list[CallRecord] = []

    def broken(record: CallRecord) -> None:
        raise RuntimeError("observer bug")

    plain = make_server()
    observed = make_server(records.append, broken)
    return plain, observed, records


_PAIR = _observed_pair()
_ERROR_ID = re.compile(rb'"error_id":"[0-9a-f]{16}"')


def _same_ids(answer: bytes | None) -> bytes | None:
    # An internal error carries a random error_id: the only part allowed to differ.
    return None if answer is None else _ERROR_ID.sub(b'"error_id":"-"', answer)


@settings(max_examples=300)
@given(hostile_messages())
def test_observed_dispatch_answers_exactly_like_unobserved(data: bytes) -> None:
    """For any bytes a peer can send, observers (one of them broken) change no answer, and
    every record names only registered methods and stays free of the message's content."""
    plain, observed, records = _PAIR
    records.clear()
    logging.getLogger("safe_rpc.ops").disabled = True  # the broken observer's log lines
    try:
        assert _same_ids(observed.dispatch(data)) == _same_ids(plain.dispatch(data))
    finally:
        logging.getLogger("safe_rpc.ops").disabled = False
    assert records  # every message gives at least one record
    registered = set(observed.methods)
    for record in records:
        assert record.method is None or record.method in registered
        assert record.request_bytes == len(data)
        assert record.batch_size >= 1
