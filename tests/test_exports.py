"""The public surface and two static audits of the package source: no unsafe
deserialisation anywhere (SR-01), and no I/O in the sans-IO core modules."""

from __future__ import annotations

import ast
import importlib
import importlib.resources
from pathlib import Path

import pytest

import safe_rpc

PACKAGE = Path(safe_rpc.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))

# Every name the package must export (docs/api.md documents each one).
EXPECTED_PUBLIC = {
    "AsyncClient", "AuthError", "BatchFuture", "BatchTooLarge", "Client", "ConfigError",
    "Context", "DEFAULT_ERRORS", "ErrorRegistry", "FailedAuthLimiter", "Forbidden",
    "InternalError", "InvalidParams", "InvalidRequest", "InvalidResponse", "Keyring",
    "LimitExceeded", "Limits", "MethodNotFound", "ParseError", "Principal", "ProtocolError",
    "RPCError", "RPCServer", "RateLimited", "RegistrationError", "RemoteError",
    "RequestTimeout", "RequestTooLarge", "ResponseTooLarge", "ServerBusy", "TransportError",
    "Unauthenticated", "__version__", "load_schema", "serve",
    "StubError", "generate_stubs",
    "ASGIApp", "Authenticator", "TCPServer",
    # section 12: shared state
    "MemoryStore", "RedisStore", "SQLiteStore", "Store", "StoreUnavailable", "store_from_url",
}  # fmt: skip
# Operating it (README).
EXPECTED_PUBLIC |= {"ASGIApp", "AccessLog", "Authenticator", "CallRecord", "Observer",
                    "OpenTelemetry", "PrometheusMetrics", "TCPServer"}  # fmt: skip
# Section 13: subscriptions.
EXPECTED_PUBLIC |= {"AsyncSubscription", "SlowConsumer", "Subscription"}

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}
FORBIDDEN_MODULES |= {"yaml", "ruamel", "jsonpickle", "xmlrpc"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}

SANS_IO = ("_core/json", "_core/protocol", "_core/registry", "_core/framing", "_core/pipeline",
           "_discovery/openrpc", "_discovery/emit", "_discovery/stubs")  # fmt: skip
IO_MODULES = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "uvicorn",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
}


def test_all_is_exactly_the_public_api() -> None:
    """__all__ holds every public name, each importable, with no duplicates."""
    assert len(safe_rpc.__all__) == len(set(safe_rpc.__all__))
    assert set(safe_rpc.__all__) == EXPECTED_PUBLIC
    for name in safe_rpc.__all__:
        assert getattr(safe_rpc, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from safe_rpc import *", namespace)  # noqa: S102  # the star-import users get
    assert set(namespace) - {"__builtins__"} == set(safe_rpc.__all__)


def test_nothing_private_leaks() -> None:
    """Every public attribute of the package is in __all__ (or is a private module)."""
    public = {
        name
        for name, value in vars(safe_rpc).items()
        if not name.startswith("_") and not isinstance(value, type(safe_rpc))
    }
    assert public <= set(safe_rpc.__all__)
    assert not any(name.startswith("_") and name != "__version__" for name in safe_rpc.__all__)


def test_public_objects_say_they_come_from_safe_rpc() -> None:
    """Public classes and functions live in safe_rpc's own modules and have docstrings."""
    for name in safe_rpc.__all__:
        value = getattr(safe_rpc, name)
        if callable(value):
            assert value.__module__.startswith("safe_rpc."), name
            assert value.__doc__, name


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name.split(".")[0] for name in found}


def _calls(tree: ast.AST) -> set[str]:
    """Names of called builtins (``eval(...)``, ``builtins.eval(...)``) and imported helpers."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute) and (
                func.attr == "import_module"
                or (isinstance(func.value, ast.Name) and func.value.id == "builtins")
            ):
                names.add(func.attr)
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_sr01_no_unsafe_deserialisation_or_eval(path: Path) -> None:
    """No module imports pickle/marshal/shelve/dill/cloudpickle/yaml or calls eval/exec."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert not _imports(tree) & FORBIDDEN_MODULES
    calls = _calls(tree)
    assert not calls & FORBIDDEN_CALLS
    # No dynamic import driven by data: import_module only in the CLI's target loader.
    if "import_module" in calls:
        assert path.parent.name == "_cli" or path == PACKAGE / "_serving" / "serve.py", path


def test_sr01_audit_sees_what_it_looks_for() -> None:
    """The audit helpers really detect the forbidden constructs (so the audit can fail)."""
    source = "import pickle\nfrom yaml import load\nimport dill.x\neval('1')\nbuiltins.exec('')"
    tree = ast.parse(source)
    assert _imports(tree) == {"pickle", "yaml", "dill"}
    assert _calls(tree) == {"eval", "exec"}
    assert _calls(ast.parse("re.compile('x')")) == set()


@pytest.mark.parametrize("module", SANS_IO)
def test_sans_io_modules_import_no_io(module: str) -> None:
    """The protocol core is sans-IO: no asyncio, sockets or HTTP libraries."""
    path = PACKAGE / f"{module}.py"
    assert path.exists(), path
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert not _imports(tree) & IO_MODULES
    # Importing it alone works (no hidden dependency on a transport).
    importlib.import_module("safe_rpc." + module.replace("/", "."))


def test_schemas_ship_with_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Schemas load by name, unknown names are refused, and a wheel's copy is preferred."""
    from safe_rpc._core import schemas as _schemas

    assert _schemas.load_schema("request")["$schema"].endswith("2020-12/schema")
    with pytest.raises(ValueError, match="unknown schema"):
        _schemas.load_schema("../../etc/passwd")
    # An installed wheel carries safe_rpc/schemas/; that copy wins over the checkout's.
    (tmp_path / "schemas").mkdir()
    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)
    assert _schemas._schema_dir() == tmp_path / "schemas"
