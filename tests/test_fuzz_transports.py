"""Property tests over real sockets (issue 6): hostile messages in random chunkings, one
byte at a time included, over HTTP and framed TCP; and hostile answers to the client.

The oracle is the same as for the dispatcher (``strategies.check_answer``): the transports
must answer exactly what the dispatcher would, and keep serving afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from fuzz_server import NORMAL, NORMAL_ANSWER, make_fuzz_server
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import Server, http_request, read_response, serve
from strategies import check_answer, expected_answers, hostile_messages
from tcp_support import recv_exactly, running_tcp

from safe_rpc import InvalidResponse, RPCError
from safe_rpc._client._protocol import ClientProtocol
from safe_rpc._core.framing import encode_frame

EXAMPLES = settings(max_examples=60)


@pytest.fixture(scope="module")
def http_server() -> Iterator[Server]:
    with serve("fuzz_app:rpc") as running:
        yield running


@pytest.fixture(scope="module")
def tcp_port() -> Iterator[int]:
    with running_tcp(make_fuzz_server()) as (_, port):
        yield port


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


def send_in_pieces(sock: socket.socket, pieces: list[bytes]) -> None:
    for piece in pieces:
        sock.sendall(piece)


@EXAMPLES
@given(hostile_messages(), st.lists(st.integers(0, 400), max_size=12), st.booleans())
def test_http_answers_hostile_bodies_in_any_chunking(
    http_server: Server, data: bytes, cuts: list[int], bytewise: bool
) -> None:
    """Over HTTP: the oracle's answer (204 exactly when none is due), then a normal call."""
    raw = http_request(data)
    pieces = [bytes([b]) for b in raw] if bytewise and len(raw) < 600 else chunked(raw, cuts)
    with socket.create_connection(("127.0.0.1", http_server.port), timeout=10) as sock:
        send_in_pieces(sock, pieces)
        status, _, body = read_response(sock)
        assert status in (200, 204)
        check_answer(data, body if status == 200 else None)
        sock.sendall(http_request(NORMAL))
        assert read_response(sock)[2] == NORMAL_ANSWER


@EXAMPLES
@given(hostile_messages().filter(bool), st.lists(st.integers(0, 400), max_size=12))
def test_tcp_answers_hostile_frames_in_any_chunking(
    tcp_port: int, data: bytes, cuts: list[int]
) -> None:
    """Over TCP: the oracle's answer (no frame when none is due), and a normal call.

    Pipelined calls on one connection run concurrently and are answered as they complete,
    so the normal call's answer may come first (a batch of async calls takes longer)."""
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as sock:
        send_in_pieces(sock, chunked(encode_frame(data) + encode_frame(NORMAL), cuts))
        first = recv_exactly(sock, int.from_bytes(recv_exactly(sock, 4), "big"))
        due = expected_answers(data) is not None
        if first == NORMAL_ANSWER:
            second = (
                recv_exactly(sock, int.from_bytes(recv_exactly(sock, 4), "big")) if due else None
            )
            check_answer(data, second)
        else:
            check_answer(data, first)
            answer = recv_exactly(sock, int.from_bytes(recv_exactly(sock, 4), "big"))
            assert answer == NORMAL_ANSWER


_RESPONSES = st.one_of(
    hostile_messages(),
    st.builds(
        lambda i, r: b'{"jsonrpc":"2.0","result":%s,"id":%d}' % (r, i),
        st.integers(0, 3),
        st.sampled_from([b"1", b"NaN", b'"\\ud800"', b"[" * 70, b'{"a":1,"a":2}', b"1e999"]),
    ),
    st.builds(
        lambda code, data: (
            b'{"jsonrpc":"2.0","error":{"code":%d,"message":"m","data":%s},"id":1}' % (code, data)
        ),
        st.integers(-33000, 5000),
        st.sampled_from([b"null", b'{"module":"os","class":"system"}', b"[1,2]", b'"x"']),
    ),
)


@settings(max_examples=300)
@given(_RESPONSES, st.booleans())
def test_client_protocol_never_returns_a_wrong_value(raw: bytes, batch: bool) -> None:
    """Any answer bytes: either exactly the ids asked for come back, or InvalidResponse or
    an RPCError is raised; nothing else, ever."""
    protocol = ClientProtocol(max_response_bytes=1 << 20)
    calls = (
        [protocol.call("add", [1, 2]), protocol.call("add", [3, 4])]
        if batch
        else [protocol.call("add", [1])]
    )
    try:
        outcomes = protocol.decode(raw, calls, batch=batch)
    except (InvalidResponse, RPCError):
        return
    assert set(outcomes) == {c.id for c in calls}
    for outcome in outcomes.values():
        assert outcome.error is None or isinstance(outcome.error, RPCError)


def test_async_client_against_random_frames() -> None:
    """A TCP peer answering with random frames makes AsyncClient raise, never hang."""
    from safe_rpc import AsyncClient, TransportError

    answers = [b"garbage", b'{"jsonrpc":"2.0","result":1,"id":77}', b"[]", b"\x00"]

    async def main() -> None:
        for answer in answers:
            handlers: list[asyncio.Task[None]] = []

            async def handle(
                reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                answer: bytes = answer,
                handlers: list[asyncio.Task[None]] = handlers,
            ) -> None:
                task = asyncio.current_task()
                assert task is not None
                handlers.append(task)
                await reader.readexactly(int.from_bytes(await reader.readexactly(4), "big"))
                writer.write(encode_frame(answer))
                await writer.drain()
                await reader.read()  # until the client hangs up
                writer.close()
                await writer.wait_closed()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            started = time.monotonic()
            async with AsyncClient(f"tcp://127.0.0.1:{port}", timeout=3) as client:
                with pytest.raises((InvalidResponse, TransportError, RPCError)):
                    await client.add(1, 2)
            assert time.monotonic() - started < 3
            await asyncio.wait_for(asyncio.gather(*handlers), 5)
            server.close()
            await server.wait_closed()

    asyncio.run(main())
