"""The strict-Python fast path for JSON-native argument models agrees with strict JSON mode.

``MethodSpec.bind`` skips re-encoding the params when every parameter is annotated with
JSON's own types; this differential test proves both modes accept and refuse the same
inputs with the same values, on generated params (issue 7's condition for the fast path).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field, ValidationError
from strategies import json_values

from safe_rpc import RPCServer
from safe_rpc._core.json import dumps_strict
from safe_rpc._core.registry import MethodSpec, is_json_native

rpc = RPCServer()


@rpc.method(public=True)
def native(
    a: int,
    b: float,
    c: str,
    d: bool,
    e: list[int] | None = None,
    f: dict[str, list[float]] | None = None,
    g: Literal["x", "y", 3] = "x",
    h: Annotated[int, Field(gt=0, le=10)] = 1,
    i: Any = None,
) -> int:
    return 0


SPEC: MethodSpec = rpc.methods["native"]
NAMES = ["a", "b", "c", "d", "e", "f", "g", "h", "i"]


def test_native_detection() -> None:
    """JSON-native annotations are recognised; others are not."""
    import datetime
    import uuid

    assert SPEC.json_native
    assert is_json_native(list[dict[str, int | None]])
    for hint in (datetime.datetime, uuid.UUID, bytes, tuple[int, int], dict[int, int], set[int]):
        assert not is_json_native(hint)


def _outcome(mode: str, named: dict[str, Any]) -> Any:
    try:
        if mode == "python":
            return ("ok", SPEC.args_adapter.validate_python(named, strict=True))
        return ("ok", SPEC.args_adapter.validate_json(dumps_strict(named), strict=True))
    except ValidationError as exc:
        return ("error", sorted((tuple(e["loc"]), e["type"]) for e in exc.errors()))


values = json_values | st.integers(-20, 20) | st.sampled_from(["x", "y", 3, 1.0, True, None])


@given(st.dictionaries(st.sampled_from([*NAMES, "zz"]), values, max_size=9))
def test_python_and_json_modes_agree(named: dict[str, Any]) -> None:
    """For any JSON params, both validation modes give the same result or the same errors."""
    assert _outcome("python", named) == _outcome("json", named)
