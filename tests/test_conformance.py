"""Every example of the JSON-RPC 2.0 specification, section 7, byte for byte on the parsed
response, through dispatch and dispatch_async; every response checked against the schemas."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from cases import SPEC_EXAMPLES, spec_server
from support import check_response

RPC = spec_server()


@pytest.mark.parametrize(
    ("name", "request_bytes", "expected"), SPEC_EXAMPLES, ids=[c[0] for c in SPEC_EXAMPLES]
)
def test_specification_example(name: str, request_bytes: bytes, expected: Any) -> None:
    """The answer is exactly the specification's (parsed), over both dispatch paths."""
    for raw in (RPC.dispatch(request_bytes), asyncio.run(RPC.dispatch_async(request_bytes))):
        assert check_response(raw) == expected
        if raw is not None:
            assert json.loads(raw) == expected


def test_answers_are_compact_utf8() -> None:
    """Responses are compact JSON (no spaces between tokens), UTF-8, no BOM."""
    raw = RPC.dispatch(SPEC_EXAMPLES[0][1])
    assert raw == b'{"jsonrpc":"2.0","result":19,"id":1}'
