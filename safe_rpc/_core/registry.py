"""Turning a decorated function into a callable, validated RPC method.

Everything expensive happens here, once, at import time: the signature is read, a strict
pydantic argument model is built, the return serializer is prepared, and every mistake
(bad name, ``*args``, missing annotations, duplicates) raises ``RegistrationError`` with a
message that says how to fix it. At call time only validation and the call remain.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Final, NotRequired

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticKnownError
from pydantic_core.core_schema import ErrorType
from typing_extensions import TypedDict

from .context import Context
from .errors import RESERVED_CODES, InvalidParams, RegistrationError, RemoteError, RPCError
from .json import dumps_strict

__all__ = ["MethodSpec", "build_method", "check_method_name"]

# Dotted identifiers, each segment starting with a letter: no leading "_", no "__" at the
# start of a segment, nothing that looks like attribute traversal (PSF-2005-001, SR-02).
_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
MAX_NAME_LENGTH: Final = 128
# Bounds on what an InvalidParams error may carry (SR-42: at most 20 entries).
_MAX_ERRORS: Final = 20
# Strict: no "12" -> 12, no True -> 1, no "nan" -> nan; unknown named params refused.
_ARGS_CONFIG: Final = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def check_method_name(name: str) -> None:
    """Raise ``RegistrationError`` unless ``name`` may be registered."""
    if not isinstance(name, str) or not name:
        raise RegistrationError("a method name must be a non-empty string")
    if name.startswith("rpc."):
        # JSON-RPC 2.0 section 4: "Method names that begin with the word rpc followed by a
        # period character (U+002E or ASCII 46) are reserved for rpc-internal methods".
        raise RegistrationError(f"method name {name!r} is reserved: names starting 'rpc.'")
    if "__" in name:
        raise RegistrationError(f"method name {name!r} contains '__'; names with it are refused")
    if len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        raise RegistrationError(
            f"method name {name!r} is not allowed: use dotted identifiers such as "
            f"'account.withdraw' (each part starts with a letter, at most "
            f"{MAX_NAME_LENGTH} characters)"
        )


class MethodSpec:
    """A registered method: its function, its policy and its prepared validators."""

    __slots__ = (
        "_validate",
        "args_adapter",
        "blocking",
        "context_param",
        "defaults",
        "errors",
        "func",
        "is_async",
        "json_native",
        "name",
        "param_names",
        "plain_result",
        "positional_only",
        "public",
        "result_adapter",
        "schema_names",
        "scopes",
    )

    def __init__(
        self,
        *,
        name: str,
        func: Callable[..., Any],
        public: bool,
        scopes: frozenset[str],
        is_async: bool,
        param_names: tuple[str, ...],
        positional_only: tuple[str, ...],
        defaults: Mapping[str, Any],
        context_param: str | None,
        args_adapter: TypeAdapter[Any],
        result_adapter: TypeAdapter[Any],
        json_native: bool = False,
        return_hint: Any = None,
        blocking: bool = True,
        errors: tuple[type[RPCError], ...] = (),
    ) -> None:
        self.name = name
        #: A sync handler that may block: under dispatch_async it runs on the handler pool.
        #: False (declared with ``@rpc.method(blocking=False)``) runs it inline on the loop.
        self.blocking = blocking
        self.func = func
        self.public = public
        self.scopes = scopes
        self.is_async = is_async
        self.param_names = param_names
        self.positional_only = positional_only
        self.defaults = defaults
        self.context_param = context_param
        self.args_adapter = args_adapter
        # The compiled validator itself: TypeAdapter.validate_python adds ~0.4 µs per call.
        self._validate = args_adapter.validator.validate_python
        self.result_adapter = result_adapter
        self.schema_names = _schema_names(args_adapter)
        self.json_native = json_native
        #: Application errors the method declares (for discovery and generated clients).
        self.errors = errors
        # `-> int`, `-> str`, `-> bool`: a value of exactly that type needs no serializer
        # (dumps_strict still refuses huge ints and lone surrogates). None: always serialise.
        plain = return_hint in (int, str, bool, float)
        self.plain_result: type = return_hint if plain else _NEVER

    def bind(self, params: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
        """Validate wire params into keyword arguments (without the Context).

        Both param styles work for every method (JSON-RPC 2.0 section 4.2): by-position maps
        onto the parameters in order with exact arity; by-name maps by name.

        Raises:
            InvalidParams: with bounded, input-free error details.
        """
        if params is None:
            named: dict[str, Any] = {}
        elif type(params) is list:
            if len(params) > len(self.param_names):
                raise InvalidParams(data=[_error("params", "too_many_arguments", "too many")])
            named = dict(zip(self.param_names, params, strict=False))
        else:
            named = params  # type: ignore[assignment]
        try:
            if self.json_native:
                # Only JSON's own types in the model: strict Python mode accepts and refuses
                # exactly what strict JSON mode does, without re-encoding the params
                # (tests/test_registry_native.py checks the two agree).
                return self._validate(  # type: ignore[no-any-return]
                    named, strict=True, extra="forbid"
                )
            # Validate in pydantic's strict *JSON* mode: it has JSON's view of types (an ISO
            # string is a datetime, a string is a UUID) and still refuses "12" for an int.
            # strict=True and extra="forbid" here, not only in the config: the config does
            # not reach nested models, dataclasses or TypedDicts (a `Point` param would take
            # {"x": "1"} or {"x": true}, and drop {"__class__": ...} silently, SR-16). Per call
            # they apply at every depth without touching the user's classes.
            return self.args_adapter.validate_json(  # type: ignore[no-any-return]
                dumps_strict(named), strict=True, extra="forbid"
            )
        except ValidationError as exc:
            raise InvalidParams(data=self._describe(exc)) from None

    def call_args(
        self, kwargs: dict[str, Any], context: Context
    ) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for the function itself."""
        if self.context_param is not None:
            kwargs[self.context_param] = context
        if not self.positional_only:
            return [], kwargs
        args = [kwargs.pop(p) if p in kwargs else self.defaults[p] for p in self.positional_only]
        return args, kwargs

    def _describe(self, exc: ValidationError) -> list[dict[str, Any]]:
        # SR-42: only {loc, type, msg}; loc keeps parameter/field names the *schema* knows
        # and array indexes; any other key came from the caller and is replaced; messages
        # come from pydantic's templates filled only with schema-side context.
        out = []
        for err in exc.errors(include_url=False, include_input=False)[:_MAX_ERRORS]:
            loc = [
                part if isinstance(part, int) or part in self.schema_names else "*"
                for part in err["loc"][:8]
            ]
            out.append(_error(loc, err["type"], _safe_message(err)))
        return out


_NATIVE_SCALARS: Final = (int, float, str, bool, type(None))


class _NEVER:
    """A type no handler result has (so ``type(x) is _NEVER`` is always False)."""


def is_json_native(hint: Any) -> bool:
    """True for annotations built only from JSON's own types: int, float, str, bool, None,
    ``list[...]``, ``dict[str, ...]``, unions, ``Literal`` and ``Annotated`` constraints."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is None:
        return hint in _NATIVE_SCALARS or hint is Any
    if origin is Annotated:
        return is_json_native(args[0])
    if origin is typing.Literal:
        return all(type(a) in (int, str, bool) for a in args)
    if origin is list:
        return all(is_json_native(a) for a in args)
    if origin is dict:
        return len(args) == 2 and args[0] is str and is_json_native(args[1])
    if origin in (typing.Union, types.UnionType):
        return all(is_json_native(a) for a in args)
    return False


def _error(loc: Any, type_: str, msg: str) -> dict[str, Any]:
    return {"loc": loc if isinstance(loc, list) else [loc], "type": type_, "msg": msg}


# pydantic's own message template per error type, read through its public API on first use
# (the formatted ``msg`` may quote the input; the template with safe context does not).
_KNOWN_TYPES: Final = frozenset(typing.get_args(ErrorType))
_TEMPLATES: dict[str, str] = {}  # at most one entry per known type
# Context values that describe the schema (a bound, an expected value), never the input.
_SAFE_CONTEXT: Final = frozenset(
    {
        "gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "expected",
        "pattern", "max_digits", "decimal_places", "whole_digits", "field_type",
        "class_name", "expected_tags", "discriminator",
    }
)  # fmt: skip


class _Withheld(dict[str, Any]):
    """Fills a template slot whose value would come from the input with a fixed mark."""

    def __missing__(self, key: str) -> str:
        return "…"


def _template(err: Any) -> str:
    kind = err["type"]
    if kind not in _KNOWN_TYPES:  # a custom error type: its text is the handler's own
        return "invalid value"
    template = _TEMPLATES.get(kind)
    if template is None:
        try:
            template = PydanticKnownError(kind, err.get("ctx")).message_template
        except (TypeError, ValueError, KeyError):  # context pydantic needs is missing
            return "invalid value"
        _TEMPLATES[kind] = template
    return template


def _safe_message(err: Any) -> str:
    template = _template(err)
    ctx = _Withheld({k: v for k, v in (err.get("ctx") or {}).items() if k in _SAFE_CONTEXT})
    try:
        msg = template.format_map(ctx)
    except (IndexError, ValueError, TypeError):  # a template we cannot fill: keep it fixed
        msg = "invalid value"
    return msg[:200]


def _schema_names(adapter: TypeAdapter[Any]) -> frozenset[str]:
    """Every property name in the argument model's JSON schema (nested models included)."""
    names: set[str] = set()
    # build_method made sure the schema exists.
    stack: list[Any] = [adapter.json_schema()]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                names.update(props)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return frozenset(names)


def build_method(
    func: Callable[..., Any],
    *,
    name: str | None,
    public: bool,
    scopes: Iterable[str],
    blocking: bool = True,
    errors: Iterable[type[RPCError]] = (),
) -> MethodSpec:
    """Inspect ``func`` once and build its ``MethodSpec``.

    Raises:
        RegistrationError: for any handler shape that cannot be called safely.
    """
    if not callable(func):
        raise RegistrationError(f"@rpc.method needs a function, got {func!r}")
    method_name = name if name is not None else getattr(func, "__name__", "")
    check_method_name(method_name)
    if isinstance(scopes, str):
        raise RegistrationError(f"scopes must be a list of strings, e.g. [{scopes!r}]")
    scope_set = frozenset(scopes)
    for scope in scope_set:
        if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
            raise RegistrationError(f"scope {scope!r} must be a non-empty string with no spaces")
    if not blocking and inspect.iscoroutinefunction(func):
        raise RegistrationError(
            f"method {method_name!r}: blocking=False is for sync functions (it runs them on the "
            "event loop); an async function already runs there, drop the argument"
        )
    if public and scope_set:
        raise RegistrationError(f"method {method_name!r} is public and cannot require scopes")
    declared = _declared_errors(method_name, errors)

    where = f"{getattr(func, '__qualname__', method_name)} (registered as {method_name!r})"
    try:
        signature = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # NameError for an unresolvable annotation, ValueError, ...
        raise RegistrationError(f"cannot read the signature of {where}: {exc}") from exc

    fields: dict[str, Any] = {}
    param_names: list[str] = []
    positional_only: list[str] = []
    defaults: dict[str, Any] = {}
    native = True  # every parameter annotation made only of JSON's own types
    context_param = None
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise RegistrationError(
                f"{where}: *args and **kwargs cannot be validated; declare each parameter"
            )
        if param.name not in hints:
            raise RegistrationError(
                f"{where}: parameter {param.name!r} has no type annotation; every parameter "
                "needs one so that its argument can be validated"
            )
        hint = hints[param.name]
        if hint is Context:
            if context_param is not None:
                raise RegistrationError(f"{where}: only one parameter may be the Context")
            context_param = param.name
            if param.kind is param.POSITIONAL_ONLY:  # `def f(ctx: Context, /, ...)`
                positional_only.append(param.name)  # call_args passes it by position
            continue
        if param.name.startswith("_"):
            raise RegistrationError(f"{where}: parameter {param.name!r} starts with '_'")
        param_names.append(param.name)
        if param.kind is param.POSITIONAL_ONLY:
            positional_only.append(param.name)
        default = param.default
        if isinstance(default, FieldInfo):
            # `amount: int = Field(gt=0)`: the constraints belong to the model, and the
            # Python default the function would see is the FieldInfo itself, so the model
            # supplies the real default instead (pydantic fills an omitted NotRequired
            # field from it, calling a default_factory afresh for every call).
            hint = Annotated[hint, default]
            if default.is_required():
                default = param.empty
        native = native and is_json_native(hint)
        if default is param.empty:
            fields[param.name] = hint
        else:
            defaults[param.name] = default
            fields[param.name] = NotRequired[hint]
    if "return" not in hints:
        raise RegistrationError(
            f"{where}: add a return annotation (for example '-> int', or '-> None'); the "
            "result is serialised through it so a handler never sends what it does not promise"
        )

    try:
        # A TypedDict validates straight into the keyword arguments (no model instance to
        # unpack); a parameter with a default is NotRequired and keeps its Python default.
        make_typed_dict: Any = TypedDict
        args_type = make_typed_dict(f"{method_name}_params", fields)
        args_type.__pydantic_config__ = _ARGS_CONFIG
        args_adapter: TypeAdapter[Any] = TypeAdapter(args_type)
        result_adapter: TypeAdapter[Any] = TypeAdapter(hints["return"])
        # A type with no JSON schema (a Callable, an arbitrary class) can never arrive in
        # or leave as JSON: every call would fail, so refuse it now, at import time.
        args_adapter.json_schema()
        result_adapter.json_schema(mode="serialization")
    except Exception as exc:  # pydantic cannot build a validator for some annotation
        raise RegistrationError(f"{where}: unsupported annotation: {exc}") from exc

    return MethodSpec(
        name=method_name,
        func=func,
        public=public,
        scopes=scope_set,
        is_async=inspect.iscoroutinefunction(func),
        param_names=tuple(param_names),
        positional_only=tuple(positional_only),
        defaults=defaults,
        context_param=context_param,
        args_adapter=args_adapter,
        result_adapter=result_adapter,
        json_native=native,
        return_hint=hints["return"],
        blocking=blocking,
        errors=declared,
    )


def _declared_errors(name: str, errors: Iterable[type[RPCError]]) -> tuple[type[RPCError], ...]:
    """``errors=[...]`` of ``@rpc.method``: application error classes, sorted by code."""
    by_code: dict[int, type[RPCError]] = {}
    for cls in errors:
        if not (isinstance(cls, type) and issubclass(cls, RPCError)) or cls is RemoteError:
            raise RegistrationError(f"method {name!r}: errors=[...] takes RPCError subclasses")
        code = cls.__dict__.get("code")
        if not isinstance(code, int) or code in RESERVED_CODES:
            raise RegistrationError(
                f"method {name!r}: {cls.__qualname__} needs its own application code "
                "(outside -32768..-32000) to be declared in errors=[...]"
            )
        if by_code.setdefault(code, cls) is not cls:
            raise RegistrationError(f"method {name!r}: two declared errors use code {code}")
    return tuple(by_code[code] for code in sorted(by_code))
