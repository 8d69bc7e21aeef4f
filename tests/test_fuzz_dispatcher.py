"""Property tests of the dispatcher under hostile input (issue 6, SR-12).

For any bytes, ``dispatch`` and ``dispatch_async`` answer exactly what the independent oracle
in ``strategies`` expects, within a bounded time, and serve the next normal request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from fuzz_server import NORMAL, NORMAL_ANSWER, make_fuzz_server
from hypothesis import given
from strategies import batches, broken_envelopes, check_answer, envelopes, hostile_messages

RPC = make_fuzz_server()
# Generous: about behaviour (no message may cost seconds), not speed.
TIME_BOUND = 1.0


@pytest.fixture(autouse=True)
def _quiet_handler_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="safe_rpc")


def _exercise(data: bytes) -> None:
    started = time.perf_counter()
    raw = RPC.dispatch(data)
    assert time.perf_counter() - started < TIME_BOUND
    check_answer(data, raw)
    assert RPC.dispatch(NORMAL) == NORMAL_ANSWER


@given(hostile_messages())
def test_sr12_any_bytes_get_a_valid_answer_or_none(data: bytes) -> None:
    """Hostile bytes of every kind get exactly the answer the oracle predicts."""
    _exercise(data)


@given(envelopes().map(lambda m: json.dumps(m).encode()))
def test_valid_envelopes_get_valid_answers(data: bytes) -> None:
    """Every schema-valid envelope is answered (or not, for notifications) correctly."""
    _exercise(data)


@given(broken_envelopes().map(lambda m: json.dumps(m).encode()))
def test_sr13_broken_envelopes_are_invalid_requests(data: bytes) -> None:
    """An envelope breaking one rule is always -32600, never executed."""
    _exercise(data)


@given(batches.map(lambda m: json.dumps(m).encode()))
def test_sr14_batches_are_answered_element_by_element(data: bytes) -> None:
    """Batches mixing valid, broken and non-object elements get one entry per request."""
    _exercise(data)


@given(hostile_messages())
def test_sr12_async_path_agrees_with_sync_path(data: bytes) -> None:
    """dispatch_async gives the same kind of answer as dispatch for any bytes."""

    async def run() -> bytes | None:
        return await RPC.dispatch_async(data)

    check_answer(data, asyncio.run(run()))
