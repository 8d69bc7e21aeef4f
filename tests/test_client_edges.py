"""Client edge paths against scripted peers on 127.0.0.1 (SR-03: the server is not trusted).

Complements test_client_hostile.py: answers to ``rpc.authenticate`` that are not what the
profile says, peers that stop mid-frame or send too much to the async client, bodies for
messages that expect none; and the sans-IO ``ClientProtocol`` checks no transport reaches.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_client_hostile import fake_server, http_answer

from safe_rpc import AsyncClient, Client, InvalidResponse, TransportError, Unauthenticated
from safe_rpc._client._protocol import ClientProtocol
from safe_rpc._core.framing import encode_frame

TOKEN = "a.b.c"  # never verified: the scripted peers decide the answer


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"not json", InvalidResponse),
        (b'{"jsonrpc":"2.0","result":1,"id":0}', InvalidResponse),  # result not an object
        (b"[]", InvalidResponse),
        (b'{"jsonrpc":"2.0","error":{"code":-32001,"message":"x"},"id":0}', Unauthenticated),
    ],
)
def test_sr03_unexpected_authentication_answers(answer: bytes, error: type[Exception]) -> None:
    """Whatever the peer answers to rpc.authenticate, the call fails with a library error."""
    with fake_server(lambda r: encode_frame(answer), http=False) as url:
        with Client(url, token=TOKEN, timeout=2) as client, pytest.raises(error):
            client.add(1, 2)

        async def main() -> None:
            async with AsyncClient(url, token=TOKEN, timeout=2) as client:
                await client.add(1, 2)

        with pytest.raises(error):
            asyncio.run(main())


def test_peer_closing_mid_frame_is_transport_error() -> None:
    """A frame cut short by the peer is a TransportError, not a hang or an OSError."""
    half = encode_frame(b'{"jsonrpc":"2.0","result":1,"id":1}')[:10]
    with (
        fake_server(lambda r: half, http=False) as url,
        Client(url, timeout=5) as client,
        pytest.raises(TransportError),
    ):
        client.add(1, 2)


def test_async_clients_refuse_oversized_answers() -> None:
    """The async transports cap answers too: a length prefix, a streamed HTTP body."""
    chunk = b"x" * 65536
    chunked = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    chunked += b"transfer-encoding: chunked\r\n\r\n" + (b"10000\r\n" + chunk + b"\r\n") * 5

    async def call(url: str) -> Any:
        async with AsyncClient(url, timeout=5, max_response_bytes=100_000) as client:
            return await client.add(1, 2)

    for reply, http in ((lambda r: b"\x00\x10\x00\x00{", False), (lambda r: chunked, True)):
        with fake_server(reply, http=http) as url, pytest.raises(InvalidResponse):
            asyncio.run(call(url))


def test_answers_where_none_is_due() -> None:
    """No answer to a request is refused; a body for a batch of notifications is refused."""
    no_content = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
    with (
        fake_server(lambda r: no_content, http=True) as url,
        Client(url, timeout=2) as client,
        pytest.raises(InvalidResponse, match="no response"),
    ):
        client.add(1, 2)
    body = http_answer(b'{"jsonrpc":"2.0","result":1,"id":1}')
    with (
        fake_server(lambda r: body, http=True) as url,
        Client(url, timeout=2) as client,
        pytest.raises(InvalidResponse, match="notifications only"),
        client.batch() as b,
    ):
        b.notify("add", 1, 2)
    with (
        fake_server(lambda r: no_content, http=True) as url,
        Client(url, timeout=2) as client,
        client.batch() as b,  # notifications only, nothing answered: nothing to check
    ):
        b.notify("add", 1, 2)


def test_protocol_checks_before_any_transport() -> None:
    """ClientProtocol alone: bad method names, oversized answers (sans-IO, no socket)."""
    protocol = ClientProtocol(max_response_bytes=64)
    with pytest.raises(TypeError, match="non-empty string"):
        protocol.call("", None)
    call = protocol.call("add", [1, 2])
    assert call.id is not None
    big = b'{"jsonrpc":"2.0","result":"' + b"x" * 64 + b'","id":1}'
    with pytest.raises(InvalidResponse, match="larger than"):
        protocol.decode(big, [call], batch=False)
    exact = protocol.decode(b'{"jsonrpc":"2.0","result":3,"id":%d}' % call.id, [call], batch=False)
    assert exact[call.id].unwrap() == 3
