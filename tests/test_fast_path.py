"""The fused path for plain servers gives the same bytes as the generator pipeline.

``RPCServer`` skips driving ``Pipeline._flow`` while ``_plain`` is true (no feature needs
per-call work). Both must answer every message byte for byte alike, through ``dispatch``
and ``dispatch_async``: over the atheris seed corpora, the JSONTestSuite corpus, the
conformance tables and the Hypothesis strategies. Internal errors carry a random
``error_id``; it is the only part masked before comparing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cases import ENVELOPES, SPEC_EXAMPLES, spec_server
from fuzz_server import make_fuzz_server
from hypothesis import given
from hypothesis import strategies as st
from strategies import batches, corpus_files, envelopes, hostile_messages

from safe_rpc import RPCServer
from safe_rpc._core.errors import DEFAULT_ERRORS, RPCError
from safe_rpc._core.json import JSONError, dumps_strict, error_bytes, result_bytes
from safe_rpc._core.protocol import error_response

FUZZ_CORPORA = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"
_ERROR_ID = re.compile(rb'"error_id":"[0-9a-f]+"')


def _pair(make: Callable[[], RPCServer]) -> tuple[RPCServer, RPCServer]:
    fused, general = make(), make()
    assert fused._plain, "a plain server must take the fused path"
    general._plain = False  # what any per-call feature does
    return fused, general


FUZZ = _pair(make_fuzz_server)
SPEC = _pair(spec_server)


@pytest.fixture(autouse=True)
def _quiet_handler_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="safe_rpc")


def _mask(raw: bytes | None) -> bytes | None:
    return None if raw is None else _ERROR_ID.sub(b'"error_id":"*"', raw)


def assert_same(pair: tuple[RPCServer, RPCServer], data: bytes) -> None:
    fused, general = pair
    expected = _mask(general.dispatch(data))
    assert _mask(fused.dispatch(data)) == expected, data
    fused_async = _mask(asyncio.run(fused.dispatch_async(data)))
    assert fused_async == _mask(asyncio.run(general.dispatch_async(data))), data
    # The drivers agree with each other too (batches: concurrent vs one by one).
    assert fused_async == expected, data


def _seeds() -> Iterator[Path]:
    for target in ("dispatcher", "parser"):
        yield from sorted((FUZZ_CORPORA / target).iterdir())


def test_fused_path_matches_pipeline_on_the_fuzz_corpora() -> None:
    """Every atheris seed of the dispatcher and parser targets: identical answers."""
    seeds = list(_seeds())
    assert len(seeds) > 100
    for path in seeds:
        assert_same(FUZZ, path.read_bytes())


def test_fused_path_matches_pipeline_on_jsontestsuite() -> None:
    """Every JSONTestSuite file, sent to both servers."""
    files = corpus_files()
    if not files:  # where the corpus lives is the corpus helper's business
        pytest.skip("JSONTestSuite corpus not found")
    for path in files:
        assert_same(FUZZ, path.read_bytes())
        assert_same(SPEC, path.read_bytes())


def test_fused_path_matches_pipeline_on_conformance_cases() -> None:
    """The JSON-RPC 2.0 specification examples and the envelope table."""
    for _, data, _ in SPEC_EXAMPLES:
        assert_same(SPEC, data)
    for envelope, _ in ENVELOPES:
        assert_same(SPEC, json.dumps(envelope).encode())
        assert_same(FUZZ, json.dumps(envelope).encode())


@given(hostile_messages())
def test_fused_path_matches_pipeline_on_hostile_bytes(data: bytes) -> None:
    assert_same(FUZZ, data)


@given(envelopes().map(lambda m: json.dumps(m).encode()))
def test_fused_path_matches_pipeline_on_envelopes(data: bytes) -> None:
    assert_same(FUZZ, data)


@given(batches.map(lambda m: json.dumps(m).encode()))
def test_fused_path_matches_pipeline_on_batches(data: bytes) -> None:
    assert_same(FUZZ, data)


def test_features_that_extend_the_flow_turn_the_fused_path_off() -> None:
    """A subclass overriding ``_flow`` (how per-call features hook in) is never bypassed."""

    class Observed(RPCServer):
        seen = 0

        def _flow(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.seen += 1
            return (yield from super()._flow(*args, **kwargs))

    rpc = Observed()

    @rpc.method(public=True)
    def add(a: int, b: int) -> int:
        return a + b

    assert not rpc._plain
    assert rpc.dispatch(b'{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}') == (
        b'{"jsonrpc":"2.0","result":3,"id":1}'
    )
    assert rpc.seen == 1


_scalars = st.none() | st.booleans() | st.integers() | st.text() | st.floats()


@given(_scalars, _scalars)
def test_result_bytes_are_what_the_encoder_gives(result: Any, id: Any) -> None:
    """The one-step encoding of a scalar answer is byte for byte ``dumps_strict``'s, and
    declines (None) exactly where it cannot promise that."""
    fast = result_bytes(result, id)
    try:
        general: bytes | None = dumps_strict({"jsonrpc": "2.0", "result": result, "id": id})
    except JSONError:
        general = None
    if fast is not None:
        assert fast == general


# The library's own errors (reserved codes), which the pipeline answers without data.
_LIBRARY_ERRORS = sorted((c for c in DEFAULT_ERRORS if -32768 <= c.code <= -32000), key=str)


def _plain_id(id: Any) -> bool:
    if id is None:
        return True
    if type(id) is int:
        return bool(-(2**63) <= id < 2**63)
    return type(id) is str and not any(0xD800 <= ord(c) <= 0xDFFF for c in id)


@given(st.sampled_from(_LIBRARY_ERRORS), _scalars)
def test_error_bytes_are_what_the_encoder_gives(error: type[RPCError], id: Any) -> None:
    """The one-step encoding of an error without data is ``dumps_strict``'s, and is used
    for every plain id (null, an int64, a string)."""
    fast = error_bytes(error.code, error.message, id)
    try:
        general: bytes | None = dumps_strict(error_response(error(), id))
    except JSONError:
        general = None
    if fast is not None:
        assert fast == general
    if _plain_id(id):
        assert fast is not None
