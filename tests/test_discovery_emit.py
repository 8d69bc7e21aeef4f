"""The stub generator's source pieces (safe_rpc._discovery.emit) on hostile document text:
every string becomes an escaped literal, every default a JSON literal or a StubError, every
schema an annotation or a StubError (SR-43: nothing from a remote document is written raw)."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from safe_rpc._discovery.emit import StubError, Types, docstring, ident, literal, value_literal


@pytest.mark.parametrize(
    "text",
    ["tab\there", "nul\x00bell\x07", "latin \xe9", "snow \u2603", "emoji \U0001f600", 'a"b\\'],
)
def test_literal_escapes_everything_but_printable_ascii(text: str) -> None:
    source = literal(text)
    assert source.isascii()
    assert source.isprintable()
    assert ast.literal_eval(source) == text


def test_literal_escapes_tab_and_control_characters_by_name() -> None:
    assert literal("a\tb") == '"a\\tb"'
    assert literal("\x01") == '"\\x01"'


@pytest.mark.parametrize(
    ("value", "source"),
    [
        (None, "None"),
        (True, "True"),
        (7, "7"),
        (1.5, "1.5"),
        ("x", '"x"'),
        ([1, None], "[1, None]"),
        ({"k": [False]}, '{"k": [False]}'),
    ],
)
def test_value_literal_of_json_values(value: Any, source: str) -> None:
    assert value_literal(value) == source
    assert ast.literal_eval(source) == value


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1: 2}, object(), b"bytes"])
def test_value_literal_refuses_what_is_not_json(value: Any) -> None:
    with pytest.raises(StubError, match="not a JSON value"):
        value_literal(value)


def test_value_literal_refuses_deep_nesting() -> None:
    deep: Any = 0
    for _ in range(40):
        deep = [deep]
    with pytest.raises(StubError, match="nested too deeply"):
        value_literal(deep)


def test_ident_and_docstring_of_hostile_text() -> None:
    assert ident("class", fallback="m") == "class_"
    assert ident("9__", fallback="m") == "m"
    assert ident("a", fallback="m", taken=["a", "a_2"]) == "a_3"
    assert docstring('say "hi"\\', "    ", default="d") == ['    """say hi"""']
    assert docstring("the 'end'", "", default="d") == ['"""the \'end\'."""']
    lines = docstring("word " * 40, "", default="d")
    assert len(lines) > 2
    assert lines[-1] == '"""'


def test_annotations_for_schemas() -> None:
    types = Types({"Point": "Point"})
    assert types.annotation({"allOf": [{"$ref": "#/components/schemas/Point"}]}) == "Point"
    assert types.annotation({"type": "array"}) == "list[Any]"
    assert types.annotation({"type": "object"}) == "dict[str, Any]"
    assert types.annotation({"type": ["string", "null"]}) == "str | None"
    assert types.annotation({"description": "no type"}) == "Any"
    assert types.annotation({"type": "array", "items": {"type": "integer"}}) == "list[int]"
    assert ("typing", "Any") in types.imports


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([1], "not a JSON object"),
        ({"type": "matrix"}, "does not know"),
        ({"$ref": "http://elsewhere/x"}, "does not point into"),
        ({"$ref": "#/components/schemas/Missing"}, "does not define"),
    ],
)
def test_annotation_refuses_bad_schemas(schema: Any, message: str) -> None:
    with pytest.raises(StubError, match=message):
        Types({}).annotation(schema)


def test_annotation_refuses_deep_schemas() -> None:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(40):
        schema = {"type": "array", "items": schema}
    with pytest.raises(StubError, match="nested too deeply"):
        Types({}).annotation(schema)
