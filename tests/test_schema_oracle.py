"""The hand-written envelope check agrees with the JSON Schemas in schemas/ (checked with
jsonschema) on every table case and on generated messages (JSON-RPC 2.0 sections 4 and 5)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from cases import ENVELOPES, SPEC_EXAMPLES, spec_server
from hypothesis import given
from strategies import batches, broken_envelopes, envelopes, json_values
from support import check_response

from safe_rpc._core.protocol import Request, classify
from safe_rpc._core.schemas import validate


def schema_accepts(element: Any) -> bool:
    try:
        validate(element, "request")
    except jsonschema.ValidationError:
        return False
    return True


def fast_path_accepts(element: Any) -> bool:
    return type(classify(element)) is Request


@pytest.mark.parametrize(
    ("element", "valid"), ENVELOPES, ids=[json.dumps(e)[:40] for e, _ in ENVELOPES]
)
def test_table_cases(element: Any, valid: bool) -> None:
    """Each table case: the schema and the fast path give the expected verdict."""
    assert schema_accepts(element) is valid
    assert fast_path_accepts(element) is valid


def test_spec_example_elements() -> None:
    """Every element of every specification example gets the same verdict from both."""
    for _, raw, _ in SPEC_EXAMPLES:
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        for element in value if isinstance(value, list) else [value]:
            assert schema_accepts(element) == fast_path_accepts(element)


@given(envelopes() | broken_envelopes() | json_values)
def test_generated_messages_agree(element: Any) -> None:
    """On generated valid, one-rule-broken and arbitrary values, the verdicts agree."""
    assert schema_accepts(element) == fast_path_accepts(element)


@given(batches)
def test_every_emitted_response_validates(batch: list[Any]) -> None:
    """Whatever the dispatcher answers to generated batches validates against the schemas."""
    rpc = spec_server()
    for message in (batch, batch[0]):
        check_response(rpc.dispatch(json.dumps(message).encode()))
