"""Property tests over WebSocket: random mixes of hostile text messages (malformed JSON,
mutated requests, corpus files) and binary messages on one connection, and hostile
messages split into random fragments (RFC 6455 section 5.4) on a raw socket. Text gets
exactly the dispatcher oracle's answer and the connection keeps serving; binary closes
with 1003 and a new connection is served at once."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fuzz_server import NORMAL, NORMAL_ANSWER, make_fuzz_server
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import check_answer, expected_answers, hostile_messages
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from ws_support import fragments, frame, handshake, read_message, running_app

EXAMPLES = settings(max_examples=60)


@pytest.fixture(scope="module")
def ws_url() -> Iterator[str]:
    with running_app(make_fuzz_server()) as (_, port):
        yield f"ws://127.0.0.1:{port}/"


def exchange_text(ws: ClientConnection, data: bytes, text: str) -> None:
    """Send one hostile text message, then a normal call; check both answers."""
    ws.send(text)
    ws.send(NORMAL.decode())
    answer: bytes | None = None
    normal = False
    want = expected_answers(data) is not None
    while not normal or (want and answer is None):
        raw = ws.recv(timeout=10)
        assert isinstance(raw, str)
        if raw.encode() == NORMAL_ANSWER and not normal:
            normal = True
        else:
            assert answer is None, "two answers to one message"
            answer = raw.encode()
    check_answer(data, answer)


def check_closed_1003(ws: ClientConnection) -> None:
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1003


@EXAMPLES
@given(st.lists(st.tuples(hostile_messages(), st.booleans()), min_size=1, max_size=4))
def test_websocket_answers_hostile_text_and_refuses_binary(
    ws_url: str, messages: list[tuple[bytes, bool]]
) -> None:
    """The oracle's answer for every text message, 1003 for binary, and always a normal
    call served afterwards (on the same connection, or a new one after a close)."""
    ws = connect(ws_url, max_size=None).__enter__()
    try:
        for data, binary in messages:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                binary = True  # not text at all: only a binary message can carry it
            if binary:
                ws.send(data)
                check_closed_1003(ws)
                ws.close()
                ws = connect(ws_url, max_size=None).__enter__()
            else:
                exchange_text(ws, data, text)
        ws.send(NORMAL.decode())
        assert json.loads(ws.recv(timeout=10)) == json.loads(NORMAL_ANSWER)
    finally:
        ws.close()


@EXAMPLES
@given(hostile_messages(), st.lists(st.integers(0, 400), max_size=8))
def test_websocket_fragmented_messages_in_any_split(
    ws_url: str, data: bytes, cuts: list[int]
) -> None:
    """A hostile text message split into random fragments on a raw socket (the engine
    reassembles them): the oracle's answer, then a normal call on the same connection."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        data = data.decode("utf-8", "replace").encode()  # a text frame must be UTF-8
    port = int(ws_url.rsplit(":", 1)[1].strip("/"))
    status, sock = handshake(port)
    with sock:
        assert status == 101
        sock.sendall(fragments(data, cuts) + frame(NORMAL))
        answer: bytes | None = None
        normal = False
        want = expected_answers(data) is not None
        while not normal or (want and answer is None):  # the two answers in either order
            opcode, payload = read_message(sock)
            if opcode == 9:  # a keepalive ping: not an answer
                continue
            assert opcode == 1
            if payload == NORMAL_ANSWER and not normal:
                normal = True
            else:
                assert answer is None, "two answers to one message"
                answer = payload
        check_answer(data, answer)
