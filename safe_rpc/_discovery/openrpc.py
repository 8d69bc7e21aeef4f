"""The OpenRPC 1.3 document ``rpc.discover`` answers, built from the registered specs.

Pure and sans-IO: it reads the pydantic models the registry already built and returns a
document (or its encoded bytes). A document only ever describes one *view*: the methods a
caller may call under the authorisation rules (public ones for anonymous callers, plus those
whose scopes a token holds), and the component schemas generated from exactly those methods,
so nothing about the rest of the inventory leaks (SECURITY.md, "Discovery"). Each view is
generated in one pydantic pass (stable ``$ref`` names) and cached as bytes.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, Final

from pydantic import TypeAdapter

from .._core.json import dumps_strict

if TYPE_CHECKING:
    from .._core.context import Principal
    from .._core.errors import RPCError
    from .._core.registry import MethodSpec

__all__ = ["OPENRPC_VERSION", "Discovery", "build_document"]

#: The OpenRPC specification version the documents follow.
OPENRPC_VERSION: Final = "1.3.2"
_PREFIX: Final = "#/components/schemas/"
# Views cached per process; past this many distinct views the cache starts over (a view is
# determined by the registered methods' scope sets, so real services have a handful).
_MAX_VIEWS: Final = 256
_SUFFIX: Final = re.compile(r"-(Input|Output)$")


def _describe(spec: MethodSpec) -> str | None:
    """The docstring's first paragraph, on one line."""
    doc = inspect.getdoc(spec.func)
    if not doc:
        return None
    return " ".join(doc.split("\n\n", 1)[0].split())


def _ident(text: str) -> str:
    name = re.sub(r"\W+", "_", text, flags=re.ASCII).strip("_")
    return name if name[:1].isalpha() else f"Model{name}"


def _rename(defs: dict[str, Any], known: dict[str, str]) -> dict[str, str]:
    """Readable component names: the class name (``InsufficientFundsData`` for an error's
    ``Data``), never pydantic's module-qualified fallback (which would show module paths)."""
    renamed: dict[str, str] = {}
    taken: set[str] = set()
    for old in sorted(defs):
        mode = _SUFFIX.search(old)
        base = known.get(old) or _ident(str(defs[old].get("title") or old))
        base += mode.group(1) if mode and old not in known else ""
        new, n = base, 1
        while new in taken:
            n += 1
            new = f"{base}{n}"
        taken.add(new)
        renamed[old] = new
    return renamed


def _rewrite(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_PREFIX):
                out[key] = _PREFIX + renamed.get(value[len(_PREFIX) :], value[len(_PREFIX) :])
            else:
                out[key] = _rewrite(value, renamed)
        return out
    if isinstance(node, list):
        return [_rewrite(item, renamed) for item in node]
    return node


def _top_ref(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    if len(schema) == 1 and isinstance(ref, str) and ref.startswith(_PREFIX):
        return ref[len(_PREFIX) :]
    return None


def build_document(specs: Iterable[MethodSpec], *, title: str, version: str) -> dict[str, Any]:
    """The OpenRPC document describing exactly ``specs`` (sorted by name).

    A spec whose ``kind`` attribute is ``"subscription"`` is listed with
    ``x-subscription: true`` and its item type as the result (the schema of each item
    notification; from ``item_adapter`` when the spec has one, else ``result_adapter``);
    every other spec is a plain method.
    """
    ordered = sorted(specs, key=lambda s: s.name)
    inputs: list[tuple[Any, Any, TypeAdapter[Any]]] = []
    errors: dict[tuple[str, str], type[RPCError]] = {}
    for spec in ordered:
        inputs.append((("params", spec.name), "validation", spec.args_adapter))
        # A subscription's result is its item type (each notification's "result").
        result = getattr(spec, "item_adapter", None) or spec.result_adapter
        inputs.append((("result", spec.name), "serialization", result))
        for cls in spec.errors:
            errors[(cls.__module__, cls.__qualname__)] = cls
    for key in sorted(errors):
        data = errors[key].Data
        if data is not None:
            inputs.append((("error", key), "serialization", TypeAdapter(data)))
    schemas, top = TypeAdapter.json_schemas(inputs, ref_template=_PREFIX + "{model}")
    defs: dict[str, Any] = dict(top.get("$defs", {}))

    params: dict[str, dict[str, Any]] = {}
    for spec in ordered:
        # The argument TypedDict is private to its method: inline it, keep no component.
        schema = schemas[(("params", spec.name), "validation")]
        ref = _top_ref(schema)
        params[spec.name] = defs.pop(ref) if ref is not None else schema
    known: dict[str, str] = {}
    for key, cls in errors.items():
        ref = _top_ref(schemas.get((("error", key), "serialization"), {}))
        if ref is not None:
            known[ref] = _ident(f"{cls.__name__}Data")
    renamed = _rename(defs, known)

    methods = []
    for spec in ordered:
        args = params[spec.name]
        properties = args.get("properties", {})
        required = set(args.get("required", ()))
        method: dict[str, Any] = {"name": spec.name}
        description = _describe(spec)
        if description:
            method["description"] = description
        method["params"] = [
            {"name": p, "required": p in required, "schema": properties.get(p, {})}
            for p in spec.param_names
        ]
        result = schemas[(("result", spec.name), "serialization")]
        method["result"] = {"name": "result", "schema": result}
        method["paramStructure"] = "either"
        declared = []
        for cls in spec.errors:
            entry: dict[str, Any] = {"code": cls.code, "message": cls.message}
            data_schema = schemas.get(
                (("error", (cls.__module__, cls.__qualname__)), "serialization")
            )
            if data_schema is not None:
                entry["data"] = data_schema
            declared.append(entry)
        if declared:
            method["errors"] = declared
        method["x-scopes"] = sorted(spec.scopes)
        method["x-public"] = spec.public
        if getattr(spec, "kind", "method") == "subscription":
            method["x-subscription"] = True
        methods.append(method)

    document: dict[str, Any] = {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version},
        "methods": _rewrite(methods, renamed),
    }
    if defs:
        document["components"] = {
            "schemas": {
                renamed[old]: _rewrite(defs[old], renamed)
                for old in sorted(defs, key=lambda o: renamed[o])
            }
        }
    return document


class Discovery:
    """Answers ``rpc.discover``: one encoded document per caller view, cached.

    Args:
        specs: returns the registered specs (read again on every miss, so methods added
            after the first call are seen).
        title, version: the document's ``info``.
    """

    def __init__(
        self, specs: Callable[[], Collection[MethodSpec]], *, title: str, version: str
    ) -> None:
        if not isinstance(title, str) or not title or not isinstance(version, str) or not version:
            raise TypeError("title and version must be non-empty strings")
        self._specs = specs
        self.title = title
        self.version = version
        self._lock = threading.Lock()
        self._by_scopes: dict[tuple[int, frozenset[str] | None], bytes] = {}
        self._by_view: dict[frozenset[str], bytes] = {}

    def visible(self, scopes: frozenset[str] | None) -> list[MethodSpec]:
        """What a caller with ``scopes`` may call (``None``: anonymous) under the
        authorisation rules: public methods, plus those whose every scope it holds."""
        return [s for s in self._specs() if s.public or (scopes is not None and s.scopes <= scopes)]

    def document(
        self, scopes: frozenset[str] | None = None, *, everything: bool = False
    ) -> dict[str, Any]:
        """The document as a dict (a fresh one each call): for ``scopes``, or of every
        registered method with ``everything=True`` (for documentation builds)."""
        specs = list(self._specs()) if everything else self.visible(scopes)
        return build_document(specs, title=self.title, version=self.version)

    def answer(self, principal: Principal | None) -> bytes:
        """The encoded document for this caller (the cached bytes on a hit)."""
        scopes = principal.scopes if principal is not None else None
        # Methods are only ever added, so their count tells a stale entry from a fresh one.
        key = (len(self._specs()), scopes)
        cached = self._by_scopes.get(key)
        if cached is not None:
            return cached
        visible = self.visible(scopes)
        view = frozenset(s.name for s in visible)
        encoded = self._by_view.get(view)
        if encoded is None:
            document = build_document(visible, title=self.title, version=self.version)
            encoded = dumps_strict(document)
        with self._lock:
            for cache in (self._by_scopes, self._by_view):
                if len(cache) >= _MAX_VIEWS:
                    cache.clear()
            self._by_view[view] = encoded
            self._by_scopes[key] = encoded
        return encoded
