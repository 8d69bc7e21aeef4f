"""Safe pieces of generated Python source: identifiers, literals, docstrings, annotations.

A stub may be generated from a *remote* document, so everything taken from it is untrusted
text headed for a ``.py`` file that someone will import. Nothing from the document is ever
written out raw: a name becomes an identifier matching ``[A-Za-z][A-Za-z0-9_]*`` that is
not a keyword; a string becomes a literal built character by character here (printable
ASCII kept, everything else escaped); a number is written only when it is a finite
``int``/``float``; prose becomes a docstring of printable ASCII without backslashes or
double quotes, which cannot end the docstring. The output is laid out the way ``ruff
format`` lays it out, so a generated module passes ``ruff format --check`` as written.
"""

from __future__ import annotations

import keyword
import math
import re
import textwrap
from collections.abc import Iterable
from typing import Any, Final

from .._core.errors import ConfigError

__all__ = ["PREFIX", "StubError", "Types", "docstring", "ident", "literal", "value_literal"]

PREFIX: Final = "#/components/schemas/"
_MAX_IDENT: Final = 64
_MAX_DEPTH: Final = 32
_MAX_DOC: Final = 600


class StubError(ConfigError):
    """The document cannot be turned into a typed client (the message says where)."""


def ident(text: object, *, fallback: str, taken: Iterable[str] = ()) -> str:
    """A Python identifier derived from ``text``: ASCII letters, digits and ``_``, starting
    with a letter, not a keyword, not in ``taken`` (``_2``, ``_3``... added when needed)."""
    raw = text if isinstance(text, str) else ""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", raw).lstrip("_0123456789").rstrip("_")[:_MAX_IDENT]
    name = name or fallback
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        name += "_"
    used = set(taken)
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def literal(text: str) -> str:
    """A Python string literal for ``text``, quoted the way ``ruff format`` prefers."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    out = []
    for ch in text:
        if ch in ("\\", quote):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif " " <= ch <= "~":
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return quote + "".join(out) + quote


def value_literal(value: Any, depth: int = 0) -> str:
    """A Python literal for a JSON value (a default), or StubError."""
    if depth > _MAX_DEPTH:
        raise StubError("a default value is nested too deeply")
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return literal(value)
    if isinstance(value, list):
        return "[" + ", ".join(value_literal(v, depth + 1) for v in value) + "]"
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = (f"{literal(k)}: {value_literal(v, depth + 1)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise StubError("a default value is not a JSON value")


def _prose(text: object) -> str:
    if not isinstance(text, str):
        return ""
    kept = "".join(ch if " " <= ch <= "~" and ch not in '\\"' else " " for ch in text)
    return " ".join(kept.replace('"', "'").split())[:_MAX_DOC].strip()


def docstring(text: object, indent: str, *, default: str) -> list[str]:
    """Docstring lines for untrusted prose (printable ASCII, no backslash or double quote)."""
    body = _prose(text) or default
    if body.endswith("'"):
        body += "."  # a docstring ending in a quote character is re-spaced by formatters
    width = 88 - len(indent)
    if len(body) + 6 <= width:
        return [f'{indent}"""{body}"""']
    lines = textwrap.wrap(body, width=width - 3)
    return [f'{indent}"""{lines[0]}', *(f"{indent}{line}" for line in lines[1:]), f'{indent}"""']


_FORMATS: Final = {
    "date-time": ("datetime", "datetime"),
    "date": ("datetime", "date"),
    "time": ("datetime", "time"),
    "duration": ("datetime", "timedelta"),
    "uuid": ("uuid", "UUID"),
}
_SCALARS: Final = {"integer": "int", "number": "float", "boolean": "bool", "null": "None"}
# JSON Schema keyword -> pydantic Field argument (arrays and strings share the length ones).
_CONSTRAINTS: Final = (
    ("exclusiveMinimum", "gt"),
    ("minimum", "ge"),
    ("exclusiveMaximum", "lt"),
    ("maximum", "le"),
    ("multipleOf", "multiple_of"),
    ("minLength", "min_length"),
    ("maxLength", "max_length"),
    ("minItems", "min_length"),
    ("maxItems", "max_length"),
    ("pattern", "pattern"),
)


class Types:
    """JSON Schema -> Python annotation source, recording the imports it needs.

    Args:
        models: component schema name -> the identifier of its generated class.
    """

    def __init__(self, models: dict[str, str]) -> None:
        self.models = models
        self.imports: set[tuple[str, str]] = set()  # (module, name)

    def annotation(self, schema: Any, depth: int = 0, *, bare: bool = False) -> str:
        """The annotation for ``schema``; ``bare``: without its top-level constraints."""
        if depth > _MAX_DEPTH:
            raise StubError("a schema is nested too deeply")
        if schema is True or schema == {}:
            return self._use("typing", "Any")
        if not isinstance(schema, dict):
            raise StubError("a schema is not a JSON object")
        base = self._base(schema, depth)
        arguments = "" if bare else self.constraints(schema)
        if not arguments or base == "Any":
            return base
        self._use("typing", "Annotated")
        return f"Annotated[{base}, {self._use('pydantic', 'Field')}({arguments})]"

    def constraints(self, schema: dict[str, Any]) -> str:
        """``gt=0, le=10`` for the schema's numeric, length and pattern constraints."""
        if "prefixItems" in schema:
            return ""
        out = []
        for key, argument in _CONSTRAINTS:
            value = schema.get(key)
            if key == "pattern" and isinstance(value, str):
                out.append(f"{argument}={literal(value)}")
            elif key != "pattern" and _finite(value):
                out.append(f"{argument}={value!r}")
        return ", ".join(out)

    def _use(self, module: str, name: str) -> str:
        self.imports.add((module, name))
        return name

    def _union(self, options: Iterable[str]) -> str:
        unique = list(dict.fromkeys(options))
        return "Any" if "Any" in unique else " | ".join(unique)

    def _base(self, schema: dict[str, Any], depth: int) -> str:
        ref = schema.get("$ref")
        if ref is not None:
            if not isinstance(ref, str) or not ref.startswith(PREFIX):
                raise StubError("a $ref does not point into #/components/schemas/")
            name = self.models.get(ref[len(PREFIX) :])
            if name is None:
                raise StubError("a $ref names a schema the document does not define")
            return name
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self._union(self.annotation(o, depth + 1) for o in options)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            return self.annotation(all_of[0], depth + 1)
        values = [schema["const"]] if "const" in schema else schema.get("enum")
        if isinstance(values, list) and values and all(_literal_ok(v) for v in values):
            choices = ", ".join(literal(v) if isinstance(v, str) else repr(v) for v in values)
            return f"{self._use('typing', 'Literal')}[{choices}]"
        kind = schema.get("type")
        if isinstance(kind, list) and kind:
            return self._union(self._typed(k, {}, depth) for k in kind)
        return self._typed(kind, schema, depth)

    def _typed(self, kind: Any, schema: dict[str, Any], depth: int) -> str:
        if kind is None:
            return self._use("typing", "Any")
        if kind == "string":
            module_name = _FORMATS.get(schema.get("format"))  # type: ignore[arg-type]
            return self._use(*module_name) if module_name else "str"
        if isinstance(kind, str) and kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            prefix = schema.get("prefixItems")
            if isinstance(prefix, list) and prefix:
                return f"tuple[{', '.join(self.annotation(p, depth + 1) for p in prefix)}]"
            items = schema.get("items")
            inner = self.annotation(items, depth + 1) if items is not None else "Any"
            if inner == "Any":
                self._use("typing", "Any")
            return f"list[{inner}]"
        if kind == "object":
            extra = schema.get("additionalProperties")
            inner = self.annotation(extra, depth + 1) if isinstance(extra, dict) else "Any"
            if inner == "Any":
                self._use("typing", "Any")
            return f"dict[str, {inner}]"
        raise StubError("a schema has a type this generator does not know")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _literal_ok(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | str)
