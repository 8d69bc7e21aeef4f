"""Import hygiene: ``import safe_rpc`` stays light, and every module imports on its own.

The layering itself is checked statically by import-linter (pyproject ``[tool.importlinter]``,
run by ``scripts/check``); these tests check what actually happens at run time in a fresh
interpreter, where an import cycle or an eager heavy import would show.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import safe_rpc

PACKAGE = Path(safe_rpc.__file__).resolve().parent
# Loaded only when used: the HTTP engine by serve(), the HTTP client by an http(s) URL,
# the command line by `safe-rpc` / `python -m safe_rpc`.
HEAVY = ("uvicorn", "h11", "httpx", "httpcore", "websockets", "safe_rpc._cli", "safe_rpc.__main__",
         "jsonschema")  # fmt: skip


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return set(out.split())


def test_import_safe_rpc_loads_no_engine_http_client_or_cli() -> None:
    """The public surface imports neither uvicorn, httpx nor the command line until used."""
    loaded = _loaded_after("import safe_rpc")
    assert "safe_rpc" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_http_client_loads_httpcore_when_made_and_tcp_client_does_not() -> None:
    """httpcore arrives with the first HTTP client, and never for a TCP-only client; the
    client never needs httpx."""
    tcp = _loaded_after("import safe_rpc\nsafe_rpc.Client('tcp://127.0.0.1:9').close()")
    assert "httpcore" not in tcp
    http = _loaded_after("import safe_rpc\nsafe_rpc.Client('http://127.0.0.1:9/').close()")
    assert "httpcore" in http
    assert "httpx" not in http


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue  # running it is the command line; tests/test_cli_* cover it
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_alone() -> None:
    """Each module imports first, in a fresh slate: no hidden cycle or order dependence.

    ``safe_rpc/__init__.py`` would import everything before the module under test, so the
    package is stood in for by an empty module of the same path while each one is loaded.
    """
    modules = _modules()
    assert {"safe_rpc", "safe_rpc._core.json", "safe_rpc._cli.main"} <= set(modules)
    script = (
        "import importlib, sys, types\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'safe_rpc']:\n"
        "        del sys.modules[loaded]\n"
        "    if name != 'safe_rpc':\n"
        "        bare = types.ModuleType('safe_rpc')\n"
        f"        bare.__path__ = [{str(PACKAGE)!r}]\n"
        "        sys.modules['safe_rpc'] = bare\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["ok"]
