"""The sans-IO connection core driven directly with a fake clock: every rule it holds,
without sockets (the transports' own tests cover the same rules over real ones)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from safe_rpc import Context, Keyring, Limits, Principal, RPCServer, ServerBusy
from safe_rpc._transports.connection import (
    Abort,
    Close,
    ConnectionCore,
    Dispatch,
    PendingBudget,
    StartStream,
    StopStream,
)

LIMITS = Limits(
    max_pending_bytes_per_connection=1000,
    max_pending_bytes=5000,
    subscription_queue=3,
    max_subscriptions_per_connection=2,
    write_timeout=2.0,
    tcp_auth_timeout=1.0,
    tcp_idle_timeout=5.0,
    max_inflight_per_connection=2,
)
ring = Keyring({"k": b"c" * 32}, audience="core")
rpc = RPCServer(keyring=ring, limits=LIMITS)


@rpc.subscription(public=True)
async def numbers(ctx: Context) -> AsyncIterator[int]:
    yield 1


def core(principal: Principal | None = None, budget: PendingBudget | None = None) -> ConnectionCore:
    if principal is None:
        principal = ring.verify(ring.issue("alice", []))
    return ConnectionCore(
        rpc, budget or PendingBudget(LIMITS.max_pending_bytes), peer="p", now=0.0,
        principal=principal,
    )  # fmt: skip


def dispatch(c: ConnectionCore, now: float = 0.0) -> Dispatch:
    c.message_received(b'{"jsonrpc":"2.0","method":"x","id":1}', now)
    actions = c.take_actions()
    assert isinstance(actions[0], Dispatch)
    return actions[0]


def open_stream(c: ConnectionCore) -> str:
    d = dispatch(c)
    spec = rpc._streams["numbers"]
    stream_id = d.session.subscribe(spec, [], {}, _ctx(c.principal))
    c.answer_ready(d.key, b'{"result":"id"}', 0.0)
    assert any(isinstance(a, StartStream) for a in c.take_actions())
    if c.next_write(0.0) is not None:
        c.write_done(0.0)
    return stream_id


def _ctx(principal: Principal | None) -> Context:
    return Context(principal=principal, request_id=1, is_notification=False, method="numbers")


def test_inflight_cap_stops_reading() -> None:
    c = core()
    first, second = dispatch(c), dispatch(c)
    assert not c.wants_input  # two in flight: the cap
    c.answer_ready(first.key, b"a", 0.1)
    assert c.wants_input
    assert second.key != first.key


def test_pending_bytes_stop_reading_until_drained() -> None:
    budget = PendingBudget(5000)
    c = core(budget=budget)
    d = dispatch(c)
    c.answer_ready(d.key, b"x" * 1200, 0.0)  # nothing waiting: one answer always fits
    assert not c.wants_input
    assert budget.used == 1200
    assert c.next_write(0.0) == b"x" * 1200
    c.write_done(0.1)
    assert c.wants_input
    assert budget.used == 0


def test_answer_that_cannot_be_held_aborts() -> None:
    """Behind already, and one more answer would go past the bound: abort, work dropped."""
    budget = PendingBudget(5000)
    c = core(budget=budget)
    a, b = dispatch(c), dispatch(c)
    c.answer_ready(a.key, b"x" * 600, 0.0)
    c.answer_ready(b.key, b"y" * 600, 0.0)
    assert isinstance(c.take_actions()[-1], Abort)
    assert c.finished
    assert budget.used == 0


def test_process_budget_shared_by_connections() -> None:
    budget = PendingBudget(1500)
    c1, c2 = core(budget=budget), core(budget=budget)
    d1, d2, d3 = dispatch(c1), dispatch(c2), dispatch(c2)
    c1.answer_ready(d1.key, b"x" * 900, 0.0)
    c2.answer_ready(d2.key, b"y" * 500, 0.0)
    c2.answer_ready(d3.key, b"z" * 300, 0.0)  # c2 is behind and the process is at 1400
    assert isinstance(c2.take_actions()[-1], Abort)
    assert budget.used == 900  # c1 keeps its answer


def test_write_deadline_aborts() -> None:
    c = core()
    d = dispatch(c)
    c.answer_ready(d.key, b"answer", 0.0)
    assert c.next_write(1.0) == b"answer"
    assert c.deadline() == 3.0
    c.timer_fired(2.9)
    assert not c.take_actions()
    c.timer_fired(3.0)
    assert isinstance(c.take_actions()[-1], Abort)


def test_auth_and_idle_deadlines_close() -> None:
    unauthenticated = ConnectionCore(rpc, PendingBudget(10), peer="p", now=0.0)
    assert unauthenticated.deadline() == 1.0
    unauthenticated.timer_fired(1.0)
    assert unauthenticated.take_actions() == [Close(code=1008)]
    idle = core()
    assert idle.deadline() == 5.0
    idle.timer_fired(5.0)
    assert idle.take_actions() == [Close()]


def test_slow_consumer_ends_only_that_stream() -> None:
    c = core()
    slow, other = open_stream(c), open_stream(c)
    for i in range(4):  # queue of 3: the fourth unsent item overflows
        c.item_ready(slow, i, 0.0)
    assert StopStream(slow) in c.take_actions()
    c.item_ready(other, 7, 0.0)
    sent = []
    while (data := c.next_write(0.0)) is not None:
        sent.append(json.loads(data)["params"])
        c.write_done(0.0)
    assert sent == [
        {"subscription": slow, "error": {"code": -32011, "message": "Slow consumer"}},
        {"subscription": other, "result": 7},
    ]


def test_subscription_cap_and_id_binding() -> None:
    c = core()
    first = open_stream(c)
    open_stream(c)
    assert len(first) == 32  # 128 random bits, hex
    d = dispatch(c)
    with pytest.raises(ServerBusy):
        d.session.subscribe(rpc._streams["numbers"], [], {}, _ctx(c.principal))
    mallory = ring.verify(ring.issue("mallory", []))
    assert d.session.unsubscribe(first, mallory) is False  # another principal
    assert d.session.unsubscribe("f" * 32, c.principal) is False  # unknown: same answer
    assert d.session.unsubscribe(first, c.principal) is True
    assert d.session.unsubscribe(first, c.principal) is False


def test_expired_principal_ends_streams_with_an_error() -> None:
    principal = ring.verify(ring.issue("alice", [], ttl=60))
    c = core(principal)
    stream = open_stream(c)
    expired = Principal(subject="alice", scopes=frozenset(), key_id="k", expires_at=0.0)
    c.principal = expired
    for s in list(c._streams.values()):
        s.principal = expired
    c.item_ready(stream, 1, 0.0)
    data = c.next_write(0.0)
    assert data is not None
    assert json.loads(data)["params"]["error"]["code"] == -32001


def test_gone_drops_everything() -> None:
    budget = PendingBudget(5000)
    c = core(budget=budget)
    d = dispatch(c)
    c.gone()
    c.answer_ready(d.key, b"late", 0.0)  # work for a connection that is gone: dropped
    assert budget.used == 0
    assert c.next_write(0.0) is None


def test_items_queued_before_the_end_still_go_out_first() -> None:
    """A generator that ends (or fails) by itself: its queued items, then the end."""
    c = core()
    stream = open_stream(c)
    c.item_ready(stream, 1, 0.0)
    c.item_ready(stream, 2, 0.0)
    c.stream_ended(stream, None, 0.0)
    sent = []
    while batch := c.next_writes(0.0, 1 << 16):
        sent += [json.loads(data)["params"] for data in batch]
        c.write_done(0.0)
    assert sent == [
        {"subscription": stream, "result": 1},
        {"subscription": stream, "result": 2},
        {"subscription": stream, "end": True},
    ]


def test_reauthenticating_as_someone_else_ends_the_previous_callers_streams() -> None:
    """Ids are bound to the principal: a new subject on the connection does not inherit
    the previous subject's subscriptions (they end with -32001); the same subject keeps
    them (a token refresh)."""
    c = core()
    stream = open_stream(c)
    same = json.dumps({"jsonrpc": "2.0", "method": "rpc.authenticate",
                       "params": [ring.issue("alice", [])], "id": 1}).encode()  # fmt: skip
    c.message_received(same, 0.0)
    assert c.streams == 1
    other = json.dumps({"jsonrpc": "2.0", "method": "rpc.authenticate",
                        "params": [ring.issue("mallory", [])], "id": 2}).encode()  # fmt: skip
    c.message_received(other, 0.0)
    assert c.streams == 0
    assert StopStream(stream) in c.take_actions()
    sent = []
    while batch := c.next_writes(0.0, 1 << 16):
        sent += [json.loads(data) for data in batch]
        c.write_done(0.0)
    ended = [m["params"] for m in sent if m.get("method") == "rpc.subscription"]
    assert ended == [
        {"subscription": stream, "error": {"code": -32001, "message": "Unauthenticated"}}
    ]
    assert sent[-1]["result"]["subject"] == "mallory"


def test_a_quiet_subscription_is_idle_without_keepalive_pings() -> None:
    """TCP (no pings): a connection whose only work is a quiet subscription still meets the
    idle deadline; WebSocket (pings prove the peer alive): it does not."""
    tcp = core()
    open_stream(tcp)
    assert tcp.deadline() == 5.0
    principal = ring.verify(ring.issue("alice", []))
    ws = ConnectionCore(rpc, PendingBudget(10_000), peer="p", now=0.0, principal=principal,
                        keepalive=True)  # fmt: skip
    open_stream(ws)
    assert ws.deadline() is None
