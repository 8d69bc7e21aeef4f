"""Registration (README: Registering functions): decorator forms, name rules, signature
rules, the strict argument model, Context injection and results serialised through the
return annotation."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from core_support import answer, assert_still_serving, error_code, make_rpc
from pydantic import BaseModel, Field
from support import request

from safe_rpc import Context, RegistrationError, RPCServer
from safe_rpc._core import registry
from safe_rpc._core.registry import _safe_message, check_method_name


def test_bare_decorator_registers_under_function_name_and_returns_it() -> None:
    """``@rpc.method`` registers the function under its name and returns it unchanged."""
    rpc = RPCServer()

    def add(a: int, b: int) -> int:
        return a + b

    assert rpc.method(add) is add
    assert list(rpc.methods) == ["add"]
    assert rpc.methods["add"].public is False
    assert add(1, 2) == 3


def test_decorator_with_options_returns_function_unchanged() -> None:
    """``@rpc.method(name=..., scopes=..., public=...)`` keeps the function as it was."""
    rpc = RPCServer()

    def withdraw(amount: int) -> int:
        return amount

    decorated = rpc.method(name="account.withdraw", scopes=["account:write", "x"])(withdraw)
    assert decorated is withdraw
    spec = rpc.methods["account.withdraw"]
    assert spec.scopes == frozenset({"account:write", "x"})
    assert spec.func is withdraw
    # rpc.methods is a copy: mutating it changes nothing.
    rpc.methods.clear()
    assert "account.withdraw" in rpc.methods


def test_dotted_names_dispatch() -> None:
    """Dotted names are plain registry keys and are called as such."""
    rpc = make_rpc()

    @rpc.method(name="math.v2.double", public=True)
    def double(x: int) -> int:
        return 2 * x

    assert answer(rpc, request("math.v2.double", [4]))["result"] == 8
    assert error_code(rpc, request("math.v2", [4])) == -32601


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("rpc.discover", "reserved"),
        ("rpc.x.y", "reserved"),
        ("_private", "not allowed"),
        ("a.__class__", "'__'"),
        ("a__b", "'__'"),
        ("", "non-empty"),
        ("a..b", "not allowed"),
        ("a.", "not allowed"),
        (".a", "not allowed"),
        ("1abc", "not allowed"),
        ("a.1b", "not allowed"),
        ("a b", "not allowed"),
        ("a-b", "not allowed"),
        ("a\n", "not allowed"),
        ("é", "not allowed"),
        ("x" * 129, "at most 128"),
    ],
)
def test_bad_names_refused_at_registration(name: str, fragment: str) -> None:
    """Reserved, private, traversal-like or malformed names raise RegistrationError."""
    rpc = RPCServer()

    def f() -> None:
        return None

    with pytest.raises(RegistrationError, match=fragment):
        rpc.method(name=name, public=True)(f)
    assert rpc.methods == {}


def test_name_rules_accept_good_names() -> None:
    """Letters, digits, underscores and dots in the allowed shape pass; 128 chars is fine."""
    for name in ("a", "A1_b", "account.withdraw", "a.b_c.D9", "rpcx", "rpc", "x" * 128):
        check_method_name(name)
    with pytest.raises(RegistrationError):
        check_method_name(5)  # type: ignore[arg-type]


def test_leading_underscore_function_needs_explicit_name() -> None:
    """A function named ``_helper`` is refused unless given a valid wire name."""
    rpc = RPCServer()

    def _helper() -> int:
        return 1

    with pytest.raises(RegistrationError):
        rpc.method(_helper)
    rpc.method(name="helper", public=True)(_helper)
    assert answer(rpc, request("helper"))["result"] == 1


def test_duplicate_names_refused() -> None:
    """Registering a second function under a taken name fails and keeps the first."""
    rpc = make_rpc()

    def add(a: int) -> int:
        return a

    with pytest.raises(RegistrationError, match="already registered"):
        rpc.method(public=True)(add)
    assert_still_serving(rpc)


def _no_return(a: int):  # type: ignore[no-untyped-def]
    return a


def _var_args(*args: int) -> int:
    return 0


def _var_kwargs(**kwargs: int) -> int:
    return 0


def _unannotated(a, b: int) -> int:  # type: ignore[no-untyped-def]
    return 0


def _positional_only_unannotated(a, /) -> int:  # type: ignore[no-untyped-def]
    return 0


def _underscore_param(_a: int) -> int:
    return 0


def _two_contexts(c1: Context, c2: Context) -> int:
    return 0


def _unresolvable(a: NoSuchType) -> int:  # type: ignore[name-defined]  # noqa: F821
    return 0


def _unsupported(a: Callable[[], int]) -> int:
    return 0


def _unsupported_return() -> Callable[[], int]:
    return lambda: 0


@pytest.mark.parametrize(
    ("func", "fragment"),
    [
        (_no_return, "return annotation"),
        (_var_args, r"\*args and \*\*kwargs"),
        (_var_kwargs, r"\*args and \*\*kwargs"),
        (_unannotated, "no type annotation"),
        (_positional_only_unannotated, "no type annotation"),
        (_underscore_param, "starts with '_'"),
        (_two_contexts, "only one parameter"),
        (_unresolvable, "cannot read the signature"),
    ],
)
def test_unsafe_signatures_refused(func: Callable[..., Any], fragment: str) -> None:
    """Signatures that cannot be validated raise a clear RegistrationError at import time."""
    rpc = RPCServer()
    with pytest.raises(RegistrationError, match=fragment):
        rpc.method(name="m", public=True)(func)
    assert rpc.methods == {}


class _Opaque:
    """A class pydantic has no JSON form for."""


def _opaque_param(a: _Opaque) -> int:
    return 0


def _opaque_return() -> _Opaque:
    return _Opaque()


@pytest.mark.parametrize("func", [_unsupported, _unsupported_return, _opaque_param, _opaque_return])
def test_annotations_without_a_json_form_refused(func: Callable[..., Any]) -> None:
    """A parameter or result type that JSON cannot carry is a registration error."""
    rpc = RPCServer()
    with pytest.raises(RegistrationError, match="unsupported annotation"):
        rpc.method(name="m", public=True)(func)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"scopes": "admin"}, "list of strings"),
        ({"scopes": ["a b"]}, "no spaces"),
        ({"scopes": [""]}, "non-empty"),
        ({"scopes": [3]}, "non-empty string"),
        ({"scopes": ["a"], "public": True}, "cannot require scopes"),
    ],
)
def test_bad_scopes_refused(options: dict[str, Any], fragment: str) -> None:
    """Scopes must be a collection of non-empty, space-free strings, and public has none."""
    rpc = RPCServer()

    def f() -> int:
        return 1

    with pytest.raises(RegistrationError, match=fragment):
        rpc.method(**options)(f)


def test_non_callable_refused() -> None:
    """Registering something that is not callable fails clearly."""
    with pytest.raises(RegistrationError, match="needs a function"):
        RPCServer().method(name="x")(42)  # type: ignore[type-var]


def test_positional_only_parameters_work_both_ways() -> None:
    """Positional-only parameters take positional and named params, defaults included."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def sub(a: int, b: int = 10, /, *, scale: int = 1) -> int:
        return (a - b) * scale

    assert answer(rpc, request("sub", [5, 3]))["result"] == 2
    assert answer(rpc, request("sub", [15]))["result"] == 5
    assert answer(rpc, request("sub", {"a": 5, "b": 3, "scale": 2}))["result"] == 4
    assert answer(rpc, request("sub", [5, 3, 3]))["result"] == 6
    assert error_code(rpc, request("sub", [5, 3, 3, 4])) == -32602


def test_context_is_injected_never_from_the_wire() -> None:
    """A Context parameter is filled by the server; the wire can neither set nor count it."""
    rpc = make_rpc()
    seen: list[Context] = []

    @rpc.method(public=True)
    def who(ctx: Context, a: int) -> int:
        seen.append(ctx)
        return a

    assert answer(rpc, request("who", [7]))["result"] == 7
    assert answer(rpc, request("who", {"a": 8}))["result"] == 8
    assert all(isinstance(c, Context) for c in seen)
    forged = {"a": 1, "ctx": {"principal": {"subject": "admin", "scopes": ["all"]}}}
    assert error_code(rpc, request("who", forged)) == -32602
    assert error_code(rpc, request("who", [{"principal": "admin"}, 1])) == -32602
    assert len(seen) == 2
    assert_still_serving(rpc)


def test_context_may_be_positional_only() -> None:
    """``def f(ctx: Context, /, a: int)`` gets the Context by position."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def first(ctx: Context, /, a: int) -> str:
        return f"{ctx.method} {a}"

    @rpc.method(public=True)
    def middle(a: int, ctx: Context, /, b: int = 2) -> str:
        return f"{ctx.method} {a + b}"

    assert answer(rpc, request("first", [1]))["result"] == "first 1"
    assert answer(rpc, request("first", {"a": 1}))["result"] == "first 1"
    assert answer(rpc, request("middle", [1]))["result"] == "middle 3"
    assert answer(rpc, request("middle", [1, 5]))["result"] == "middle 6"


@pytest.mark.parametrize(
    ("params", "result"),
    [
        ([2, 3], 5),
        ({"a": 2, "b": 3}, 5),
        ({"b": 3, "a": 2}, 5),
        (["12", 1], -32602),
        ([True, 1], -32602),
        ([1, False], -32602),
        ([1.0, 1], -32602),
        ([1.5, 1], -32602),
        ([None, 1], -32602),
        ([[1], 1], -32602),
        ({"a": 1, "b": 2, "c": 3}, -32602),
        ({"a": 1}, -32602),
        ([1], -32602),
        ([], -32602),
        ([1, 2, 3], -32602),
        ({}, -32602),
    ],
)
def test_strict_int_model(params: Any, result: int) -> None:
    """Only exact ints pass; extra, missing or surplus params are -32602."""
    rpc = make_rpc()
    reply = answer(rpc, request("add", params))
    if result == -32602:
        assert reply["error"]["code"] == -32602
    else:
        assert reply["result"] == result
    assert_still_serving(rpc)


def test_method_without_params_accepts_absent_or_empty_params() -> None:
    """A parameterless method takes no params member, [] or {} and refuses anything more."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def ping() -> str:
        return "pong"

    for data in (request("ping"), request("ping", []), request("ping", {})):
        assert answer(rpc, data)["result"] == "pong"
    assert error_code(rpc, request("ping", [1])) == -32602
    assert error_code(rpc, request("ping", {"x": 1})) == -32602


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "Infinity", "1.5", True, None])
def test_strict_float_model(value: Any) -> None:
    """A float parameter refuses strings (including "nan") and booleans; ints are floats."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def half(x: float) -> float:
        return x / 2

    assert error_code(rpc, request("half", [value])) == -32602
    assert answer(rpc, request("half", [3]))["result"] == 1.5
    assert answer(rpc, request("half", [3.0]))["result"] == 1.5


def test_defaults_are_applied() -> None:
    """Omitted params take the Python default; Field defaults and factories work too."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def greet(
        name: str,
        greeting: str = "hello",
        tags: Annotated[list[str], Field(max_length=3)] = Field(default_factory=list),  # noqa: B008
        times: int = Field(default=1, ge=1, le=3),
    ) -> str:
        tags.append("seen")  # a fresh list per call: the factory runs every time
        return f"{greeting} {name} {len(tags)} {times}"

    assert answer(rpc, request("greet", ["bo"]))["result"] == "hello bo 1 1"
    assert answer(rpc, request("greet", ["bo"]))["result"] == "hello bo 1 1"
    assert answer(rpc, request("greet", ["bo", "hi", ["x"], 3]))["result"] == "hi bo 2 3"
    assert answer(rpc, request("greet", {"name": "bo", "times": 2}))["result"] == "hello bo 1 2"
    assert error_code(rpc, request("greet", {"name": "bo", "times": 4})) == -32602
    assert error_code(rpc, request("greet", ["bo", "hi", ["a", "b", "c", "d"]])) == -32602


def test_required_field_constraint() -> None:
    """``x: int = Field(gt=0)`` is required and constrained."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def positive(x: int = Field(gt=0)) -> int:
        return x

    assert answer(rpc, request("positive", [3]))["result"] == 3
    assert error_code(rpc, request("positive", [0])) == -32602
    assert error_code(rpc, request("positive", [])) == -32602


class Point(BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class Pair:
    left: str
    right: dt.date


def test_rich_params_from_json_strings() -> None:
    """datetime, UUID and pydantic-model params come from their JSON forms."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def describe(when: dt.datetime, ident: uuid.UUID, point: Point) -> str:
        assert isinstance(when, dt.datetime)
        assert isinstance(ident, uuid.UUID)
        assert isinstance(point, Point)
        return f"{when.year} {ident.version} {point.x + point.y}"

    ident = str(uuid.uuid4())
    params = ["2024-05-06T07:08:09Z", ident, {"x": 1, "y": 2}]
    assert answer(rpc, request("describe", params))["result"] == "2024 4 3"
    named = {"when": "2024-05-06T07:08:09+02:00", "ident": ident, "point": {"x": 1, "y": 2}}
    assert answer(rpc, request("describe", named))["result"] == "2024 4 3"
    for bad in (
        ["yesterday", ident, {"x": 1, "y": 2}],
        ["2024-05-06T07:08:09Z", "not-a-uuid", {"x": 1, "y": 2}],
        ["2024-05-06T07:08:09Z", ident, {"x": "1", "y": 2}],  # strict inside models too
        ["2024-05-06T07:08:09Z", ident, {"x": True, "y": 2}],
        ["2024-05-06T07:08:09Z", ident, {"x": 1}],
        [1714979289, ident, {"x": 1, "y": 2}],  # strict: a number is not a datetime
    ):
        assert error_code(rpc, request("describe", bad)) == -32602


def test_invalid_params_data_names_schema_fields_only() -> None:
    """-32602 data keeps known field names and indexes; caller-chosen keys become "*"."""
    rpc = make_rpc()

    @rpc.method(public=True)
    def plot(points: list[Point]) -> int:
        return len(points)

    data = answer(rpc, request("plot", {"points": [{"x": 1, "y": "2"}], "evil_key": 1}))
    entries = data["error"]["data"]
    locs = [e["loc"] for e in entries]
    assert ["points", 0, "y"] in locs
    assert ["*"] in locs
    assert "evil_key" not in str(entries)
    assert all(isinstance(e["msg"], str) and len(e["msg"]) <= 200 for e in entries)


def test_results_serialised_through_the_annotation() -> None:
    """datetime, UUID, dataclass and pydantic results become their JSON forms."""
    rpc = make_rpc()
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")

    @rpc.method(public=True)
    def when() -> dt.datetime:
        return dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    @rpc.method(name="ident", public=True)
    def ident_() -> uuid.UUID:
        return ident

    @rpc.method(public=True)
    def pair() -> Pair:
        return Pair("a", dt.date(2024, 2, 29))

    @rpc.method(public=True)
    def point() -> Point:
        return Point(x=1, y=2)

    @rpc.method(public=True)
    def nothing() -> None:
        return None

    assert answer(rpc, request("when"))["result"] == "2024-01-02T03:04:05Z"
    assert answer(rpc, request("ident"))["result"] == str(ident)
    assert answer(rpc, request("pair"))["result"] == {"left": "a", "right": "2024-02-29"}
    assert answer(rpc, request("point"))["result"] == {"x": 1, "y": 2}
    assert answer(rpc, request("nothing"))["result"] is None


@pytest.mark.parametrize(
    ("annotation", "value"),
    [(str, b"bytes"), (float, math.nan), (int, 10**5000), (str, "\ud800"), (Point, {"x": 1})],
    ids=["bytes", "nan", "huge-int", "lone-surrogate", "dict-for-model"],
)
def test_results_the_annotation_cannot_promise_are_internal_errors(
    annotation: Any, value: Any
) -> None:
    """bytes from ``-> str``, NaN, 10**5000, a lone surrogate or a dict for a model: -32603."""
    rpc = make_rpc()

    def bad() -> Any:
        return value

    bad.__annotations__["return"] = annotation
    rpc.method(public=True)(bad)
    assert error_code(rpc, request("bad")) == -32603
    assert_still_serving(rpc)


def test_unfillable_message_template_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a pydantic message template cannot be filled safely, a fixed text is sent."""
    from safe_rpc._core import registry as _registry

    monkeypatch.setitem(_registry._TEMPLATES, "int_type", "bad {0} template {x!z}")
    rpc = make_rpc()
    reply = answer(rpc, request("add", ["1", 2]))
    assert reply["error"]["data"][0]["msg"] == "invalid value"
    monkeypatch.undo()
    reply = answer(rpc, request("add", ["1", 2]))
    assert reply["error"]["data"][0]["msg"] == "Input should be a valid integer"


class _Loose(BaseModel):  # a user's model that keeps pydantic's default (extra ignored)
    x: int


def test_sr16_nested_unknown_members_refused_without_changing_the_users_model() -> None:
    """Unknown members are refused at every depth per call; the user's class itself still
    ignores extras everywhere else (its config is not mutated)."""
    rpc = RPCServer()

    @rpc.method(public=True)
    def take(m: _Loose) -> int:
        return m.x

    assert error_code(rpc, request("take", [{"x": 1, "__class__": "os.system"}])) == -32602
    assert answer(rpc, request("take", [{"x": 1}]))["result"] == 1
    assert _Loose.model_config.get("extra") is None
    assert _Loose.model_validate({"x": 1, "y": 2}).x == 1


def test_invalid_params_messages_come_from_pydantic_templates_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The message is pydantic's template filled with schema context only (SR-42); an error
    type it does not know, or one without the context it needs, gets a fixed text."""
    monkeypatch.setattr(registry, "_TEMPLATES", {})  # as in a fresh process
    assert _safe_message({"type": "greater_than", "ctx": {"gt": 3}}) == (
        "Input should be greater than 3"
    )
    assert _safe_message({"type": "greater_than", "ctx": {"gt": 5}}) == (
        "Input should be greater than 5"
    )  # the template is cached, the context is not
    assert _safe_message({"type": "string_type"}) == "Input should be a valid string"
    assert _safe_message({"type": "multiple_of"}) == "invalid value"  # context missing
    assert _safe_message({"type": "greater_than"}) == "Input should be greater than …"
    assert _safe_message({"type": "handler_defined", "ctx": {"x": 1}}) == "invalid value"
    withheld = _safe_message({"type": "literal_error", "ctx": {"expected": "'a'", "input": 1}})
    assert withheld == "Input should be 'a'"
