"""``safe-rpc stubs``: a typed client module generated from an OpenRPC document.

The module holds a pydantic model per component schema, an ``RPCError`` subclass per
declared application error (with its ``Data`` model) in an ``ErrorRegistry`` of the
module's own, and a client class per service, sync and async, whose methods carry the real
signatures and turn results into the declared types (a ``datetime`` arrives as a
``datetime``, a model as that model). The document may come from a remote server: see
``emit`` for how nothing in it is ever written into the source unchecked.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel

from .._core.errors import RESERVED_CODES
from .emit import PREFIX, StubError, Types, docstring, ident, literal, value_literal

__all__ = ["StubError", "generate_stubs"]

_WIDTH: Final = 88
_MAX_METHODS: Final = 2_000
# Module-level names of the generated file; nothing from the document may take them.
_RESERVED: Final = frozenset(
    {
        "annotations", "json", "datetime", "date", "time", "timedelta", "UUID", "SSLContext",
        "Annotated", "Any", "Final", "Literal", "TypeAlias", "TypeVar", "BaseModel",
        "ConfigDict", "Field", "TypeAdapter", "ValidationError", "AsyncClient", "Client",
        "ErrorRegistry", "InvalidResponse", "RPCError", "T", "Omitted", "OMIT", "ERRORS",
    }
) | frozenset(dir(builtins))  # fmt: skip
_MODEL_RESERVED: Final = frozenset(dir(BaseModel))
_BUILTINS: Final = frozenset(dir(builtins))
_TYPE_BUILTINS: Final = frozenset({"str", "int", "float", "bool", "dict", "list", "tuple"})
_CLIENT_MEMBERS: Final = frozenset({"client", "close", "aclose"})

_HELPERS: Final = '''\
T = TypeVar("T")
_ANY: Final[TypeAdapter[Any]] = TypeAdapter(Any)


class Omitted:
    """The value of an optional argument left out: the server applies its default."""


OMIT: Final = Omitted()


def _dump(value: object) -> Any:
    """An argument as JSON (models by alias, datetimes and UUIDs as strings)."""
    return _ANY.dump_python(value, mode="json", by_alias=True)


def _load(adapter: TypeAdapter[T], raw: object) -> T:
    """A result as its declared type, validated strictly (JSON's view of types)."""
    try:
        return adapter.validate_json(json.dumps(raw), strict=True)
    except ValidationError:
        raise InvalidResponse("the result does not match its declared type") from None
'''


def _call(indent: str, head: str, args: list[str], tail: str = "") -> list[str]:
    """``head(args)tail`` on one line if it fits, else one argument per line."""
    line = f"{indent}{head}({', '.join(args)}){tail}"
    if len(line) <= _WIDTH:
        return [line]
    return [f"{indent}{head}(", *(f"{indent}    {a}," for a in args), f"{indent}){tail}"]


_PLAIN: Final = re.compile(r"(?:list|tuple|dict)\[(?:str|int|float|bool|None|[ ,|])*\]")


def _default(prop: Any, annotation: str) -> str | None:
    """The default as a literal of the annotated type, or None when it cannot be written
    as one (a model given as a JSON object, a datetime given as a string...)."""
    if not isinstance(prop, dict) or "default" not in prop:
        return None
    value = prop["default"]
    base = annotation.removeprefix("Annotated[")
    scalar = {str: ("str", "Literal["), bool: ("bool",), int: ("int", "float"), float: ("float",)}
    if value is None:
        return "None" if annotation.endswith("None") else None
    if type(value) in scalar:
        return value_literal(value) if base.startswith(scalar[type(value)]) else None
    if isinstance(value, list | dict) and (not value or _PLAIN.fullmatch(annotation)):
        if annotation.startswith("tuple[") and isinstance(value, list):
            items = [value_literal(v) for v in value]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        prefix = "list[" if isinstance(value, list) else "dict["
        return value_literal(value) if annotation.startswith(prefix) else None
    return None


def _words(text: object) -> str:
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", str(text)) if w)


class _Generator:
    def __init__(self, document: Mapping[str, Any]) -> None:
        info = document.get("info")
        info = info if isinstance(info, dict) else {}
        self.title = info.get("title") if isinstance(info.get("title"), str) else "service"
        self.version = info.get("version") if isinstance(info.get("version"), str) else ""
        components = document.get("components")
        schemas = components.get("schemas") if isinstance(components, dict) else None
        self.schemas: dict[str, Any] = schemas if isinstance(schemas, dict) else {}
        methods = document.get("methods")
        if not isinstance(methods, list) or len(methods) > _MAX_METHODS:
            raise StubError("the document's methods must be a list (of at most 2,000)")
        # Subscriptions (x-subscription) answer an id and stream notifications: they are
        # not request/response calls, so the typed clients leave them out.
        self.methods = [
            m for m in methods if isinstance(m, dict) and m.get("x-subscription") is not True
        ]
        self.taken: set[str] = set(_RESERVED)
        base = ident(_words(self.title), fallback="Service")
        self.sync_name = self._name(f"{base}Client", "ServiceClient")
        self.async_name = self._name(f"Async{base}Client", "AsyncServiceClient")
        self.models = {n: self._name(n, "Model") for n in sorted(self.schemas)}
        self.types = Types(self.models)

    def _name(self, text: str, fallback: str) -> str:
        name = ident(text, fallback=fallback, taken=self.taken)
        self.taken.add(name)
        return name

    # -- models -------------------------------------------------------------------------------

    def models_source(self) -> list[str]:
        classes: list[str] = []
        aliases: list[str] = []
        for name in sorted(self.schemas):
            schema = self.schemas[name]
            cls = self.models[name]
            if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
                classes += ["", "", *self._model(cls, schema)]
            else:
                self.types.imports.add(("typing", "TypeAlias"))
                annotation = self.types.annotation(schema)
                aliases.append(f"{cls}: TypeAlias = {annotation}")
        # Aliases are evaluated at import time, after every class they may name.
        return classes + (["", "", *aliases] if aliases else [])

    def _model(self, cls: str, schema: dict[str, Any]) -> list[str]:
        lines = [f"class {cls}(BaseModel):"]
        lines += docstring(schema.get("description"), "    ", default=f"The {cls} schema.")
        lines += ["", '    model_config = ConfigDict(extra="forbid", validate_by_name=True)', ""]
        required = schema.get("required")
        required = set(required) if isinstance(required, list) else set()
        # A field may not shadow a module-level or builtin name an annotation might use
        # (``id`` or ``type`` are fine as field names; ``str`` or ``datetime`` are not).
        used = set(_MODEL_RESERVED) | (self.taken - _BUILTINS) | _TYPE_BUILTINS
        for wire, prop in schema["properties"].items():
            name = ident(wire, fallback="field", taken=used)
            if name.startswith("model_"):
                name = ident(f"f_{name}", fallback="field", taken=used)
            used.add(name)
            annotation = self.types.annotation(prop)
            options = [] if name == wire else [f"alias={literal(wire)}"]
            if wire not in required:
                default = _default(prop, annotation)
                if default is None:
                    default = "None"
                    if not annotation.endswith("| None") and annotation not in ("None", "Any"):
                        annotation += " | None"
                options.insert(0, f"default={default}" if options else default)
            if len(options) == 1 and not options[0].startswith("alias="):
                lines.append(f"    {name}: {annotation} = {options[0]}")
            elif options:
                lines += _call("    ", f"{name}: {annotation} = Field", options)
            else:
                lines.append(f"    {name}: {annotation}")
        return lines

    # -- errors -------------------------------------------------------------------------------

    def errors_source(self) -> tuple[list[str], dict[int, str]]:
        found: dict[int, dict[str, Any]] = {}
        for method in self.methods:
            errors = method.get("errors")
            for error in errors if isinstance(errors, list) else []:
                code = error.get("code") if isinstance(error, dict) else None
                if type(code) is int and code not in RESERVED_CODES and -(2**63) <= code < 2**63:
                    found.setdefault(code, error)
        lines: list[str] = []
        names: dict[int, str] = {}
        for code in sorted(found):
            error = found[code]
            data = error.get("data")
            model = None
            ref = data.get("$ref") if isinstance(data, dict) else None
            if isinstance(ref, str) and ref.startswith(PREFIX):
                model = self.models.get(ref[len(PREFIX) :])
            hint = model[:-4] if model and model.endswith("Data") and len(model) > 4 else ""
            message = error.get("message")
            message = message if isinstance(message, str) else "error"
            cls = self._name(hint or _words(message), f"Error{code}".replace("-", "M"))
            names[code] = cls
            lines += ["", "", f"class {cls}(RPCError, register=False):"]
            lines += docstring(f"Error {code}: {message}", "    ", default="An error.")
            lines += ["", f"    code = {code}", f"    message = {literal(message)}"]
            if model is not None:
                lines.append(f"    Data = {model}")
        lines += [
            "",
            "",
            "#: This module's own registry: safe_rpc's standard errors plus the ones above.",
            "ERRORS: Final = ErrorRegistry.standard()",
            *(f"ERRORS.add({names[code]})" for code in sorted(names)),
        ]
        return lines, names

    # -- clients ------------------------------------------------------------------------------

    def clients_source(self, errors: dict[int, str]) -> list[str]:
        plans = []
        seen_wire: set[str] = set()
        members = set(_CLIENT_MEMBERS)
        adapters: list[str] = []
        for method in sorted(self.methods, key=lambda m: str(m.get("name"))):
            wire = method.get("name")
            if not isinstance(wire, str) or not wire or wire in seen_wire:
                raise StubError("every method needs a unique, non-empty string name")
            seen_wire.add(wire)
            name = ident(wire.replace(".", "_"), fallback="method", taken=members)
            members.add(name)
            result = method.get("result")
            schema = result.get("schema", {}) if isinstance(result, dict) else {}
            returns = self.types.annotation(schema)
            adapter = self._name(f"R_{name}", "R_method")
            # The variable's type needs no constraints; the adapter itself keeps them.
            bare = self.types.annotation(schema, bare=True)
            adapters += _call("", f"{adapter}: Final[TypeAdapter[{bare}]] = TypeAdapter", [returns])
            plans.append((method, wire, name, returns, adapter))
        lines = ["", "", *adapters]
        for is_async in (False, True):
            lines += self._client(plans, errors, is_async)
        return lines

    def _client(self, plans: list[Any], errors: dict[int, str], is_async: bool) -> list[str]:
        cls = self.async_name if is_async else self.sync_name
        base = "AsyncClient" if is_async else "Client"
        what = f"{self.title} {self.version}".strip()
        head = "async def" if is_async else "def"
        wait = "await " if is_async else ""
        close = "aclose" if is_async else "close"
        enter, exit_ = ("__aenter__", "__aexit__") if is_async else ("__enter__", "__exit__")
        lines = ["", "", f"class {cls}:"]
        lines += docstring(f"Typed {base} of {what} (generated).", "    ", default="A client.")
        lines += [
            "",
            "    def __init__(",
            "        self,",
            "        url: str,",
            "        *,",
            "        token: str | None = None,",
            "        timeout: float = 10.0,",
            "        ssl: SSLContext | None = None,",
            "    ) -> None:",
            *_call(
                "        ",
                f"self.client = {base}",
                ["url", "token=token", "timeout=timeout", "ssl=ssl", "errors=ERRORS"],
            ),
            "",
            f"    {head} {close}(self) -> None:",
            f"        {wait}self.client.{close}()",
            "",
            f"    {head} {enter}(self) -> {cls}:",
            "        return self",
            "",
            f"    {head} {exit_}(self, *exc_info: object) -> None:",
            f"        {wait}self.{close}()",
        ]
        for method, wire, name, returns, adapter in plans:
            lines += ["", *self._method(method, wire, name, returns, adapter, errors, is_async)]
        return lines

    def _method(
        self,
        method: dict[str, Any],
        wire: str,
        name: str,
        returns: str,
        adapter: str,
        errors: dict[int, str],
        is_async: bool,
    ) -> list[str]:
        params = method.get("params")
        params = params if isinstance(params, list) else []
        used = set(self.taken) | {"self", "params", "raw"}
        signature: list[str] = []
        required_lines: list[str] = []
        optional_lines: list[str] = []
        for param in params:
            if not isinstance(param, dict) or not isinstance(param.get("name"), str):
                raise StubError(f"method {wire!r}: every param needs a string name")
            pname = ident(param["name"], fallback="arg", taken=used)
            used.add(pname)
            annotation = self.types.annotation(param.get("schema", {}))
            key = literal(param["name"])
            if param.get("required") is True:
                signature.append(f"{pname}: {annotation}")
                required_lines.append(f"            {key}: _dump({pname}),")
            else:
                signature.append(f"{pname}: {annotation} | Omitted = OMIT")
                optional_lines += [
                    f"        if not isinstance({pname}, Omitted):",
                    f"            params[{key}] = _dump({pname})",
                ]
        head = "async def" if is_async else "def"
        optional = [s.endswith("= OMIT") for s in signature]
        if True in optional and False in optional[optional.index(True) :]:
            # A required param after an optional one: from the first optional on, every
            # argument is keyword-only (Python allows required ones there).
            signature.insert(optional.index(True), "*")
        if signature:
            lines = [f"    {head} {name}(", "        self,", *(f"        {s}," for s in signature)]
            lines.append(f"    ) -> {returns}:")
        else:
            lines = [f"    {head} {name}(self) -> {returns}:"]
        raised = [
            errors[e["code"]]
            for e in method.get("errors") or []
            if isinstance(e, dict) and e.get("code") in errors
        ]
        about = method.get("description") or method.get("summary")
        text = f"{about if isinstance(about, str) else ''} Calls the remote method {wire}."
        if raised:
            text += f" Raises {', '.join(raised)}."
        lines += docstring(text, "        ", default="A remote method.")
        wait = "await " if is_async else ""
        if signature:
            if required_lines:
                lines += ["        params: dict[str, Any] = {", *required_lines, "        }"]
            else:
                lines.append("        params: dict[str, Any] = {}")
            lines += optional_lines
        call_args = [literal(wire), "**params"] if signature else [literal(wire)]
        lines += _call("        ", f"raw = {wait}self.client.call", call_args)
        if returns == "None":
            lines.append(f"        _load({adapter}, raw)")
        else:
            lines.append(f"        return _load({adapter}, raw)")
        return lines

    # -- the module ---------------------------------------------------------------------------

    def module(self) -> str:
        models = self.models_source()
        errors, names = self.errors_source()
        clients = self.clients_source(names)
        what = " ".join(f"{self.title} {self.version}".split())
        header = docstring(
            f"Typed clients for {what}, generated by safe-rpc stubs from its OpenRPC "
            "document. Regenerate instead of editing.",
            "",
            default="Typed clients.",
        )
        body = [*models, *errors, "", "", *_HELPERS.splitlines(), *clients]
        while not body[0]:
            body.pop(0)
        # isort's rule: two blank lines before a class or function, one before a statement.
        gap = ["", ""] if body[0].startswith(("class ", "def ")) else [""]
        return "\n".join([*header, "", *self._imports(body), *gap, *body]) + "\n"

    def _imports(self, body: list[str]) -> list[str]:
        text = "\n".join(body)
        wanted = set(self.types.imports)
        wanted |= {("typing", "Any"), ("typing", "Final"), ("typing", "TypeVar")}
        wanted.add(("ssl", "SSLContext"))
        std: dict[str, set[str]] = {}
        for module, name in wanted:
            if module != "pydantic":
                std.setdefault(module, set()).add(name)
        pydantic = {"BaseModel", "ConfigDict", "TypeAdapter", "ValidationError"}
        if ("pydantic", "Field") in wanted or "Field(" in text:
            pydantic.add("Field")
        if "(BaseModel):" not in text:
            pydantic -= {"BaseModel", "ConfigDict"}
        lines = ["from __future__ import annotations", "", "import json"]
        lines += [f"from {m} import {', '.join(sorted(std[m]))}" for m in sorted(std)]
        # safe_rpc is a third-party package for the project that holds the generated module.
        lines += ["", f"from pydantic import {', '.join(sorted(pydantic))}"]
        safe = ["AsyncClient", "Client", "ErrorRegistry", "InvalidResponse"]
        safe += ["RPCError"] if "(RPCError, register=False):" in text else []
        lines.append(f"from safe_rpc import {', '.join(safe)}")
        return lines


def generate_stubs(document: Mapping[str, Any]) -> str:
    """The source of a typed client module for ``document`` (an OpenRPC document).

    The same document always gives the same text. Raises ``StubError`` for a document that
    cannot be described safely (a dangling ``$ref``, unnamed methods, unknown types).
    """
    if not isinstance(document, Mapping):
        raise StubError("an OpenRPC document is a JSON object")
    return _Generator(document).module()
