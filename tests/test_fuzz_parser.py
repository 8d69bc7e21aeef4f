"""Differential fuzzing of the strict parser against ``json.loads`` (issue 6).

Every input StrictJSON accepts parses to the same value in ``json.loads``; every input it
rejects is either rejected by ``json.loads`` or breaks a documented strictness rule (which
the independent reference parser in ``strategies`` checks).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from corpora import JSONTESTSUITE
from hypothesis import given
from hypothesis import strategies as st
from strategies import LIMITS, hostile_messages, json_values, reference_parse

from safe_rpc._core.json import JSONError, StrictJSON, dumps_strict

PARSER = StrictJSON(
    max_depth=LIMITS.max_depth,
    max_object_members=LIMITS.max_object_members,
    max_array_items=LIMITS.max_array_items,
)


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from 1.0 and True from 1 (json keeps those apart)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def _agree(data: bytes) -> None:
    try:
        ours: Any = PARSER.loads(data)
        accepted = True
    except JSONError:
        accepted = False
    ref_accepted, ref_value = reference_parse(data)
    # The reference parser states the documented rules independently: both must agree.
    assert accepted == ref_accepted, data
    if accepted:
        assert _same(ours, ref_value)
        assert _same(ours, json.loads(data)), data


@given(hostile_messages())
def test_parser_agrees_with_reference_and_json_loads(data: bytes) -> None:
    """Accept/reject decisions and values match the reference on hostile bytes."""
    _agree(data)


@given(json_values)
def test_round_trip_of_generated_values(value: Any) -> None:
    """Anything dumps_strict writes, loads reads back to the same value."""
    assert _same(PARSER.loads(dumps_strict(value)), value)


@given(st.binary(max_size=256))
def test_parser_agrees_on_random_bytes(data: bytes) -> None:
    """Random bytes: same decision as the reference, and no exception but JSONError."""
    _agree(data)


@pytest.mark.parametrize("path", JSONTESTSUITE.params("test_parsing"))
def test_parser_agrees_on_json_test_suite(path: Any) -> None:
    """Every JSONTestSuite file: same decision and value as the reference parser."""
    _agree(path.read_bytes())
