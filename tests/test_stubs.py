"""``safe-rpc stubs``: typed client modules generated from OpenRPC documents.

The golden file ``tests/golden/bank_client.py`` is the module generated for
``examples.bank:rpc``; regenerate it with
``safe-rpc stubs examples.bank:rpc --out tests/golden/bank_client.py`` when the generator
or the example changes on purpose.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from servers import APPS, REPO_ROOT, Server, serve, started

from safe_rpc import Client, InvalidParams, Keyring, RPCServer
from safe_rpc._discovery.stubs import StubError, generate_stubs

GOLDEN = Path(__file__).parent / "golden" / "bank_client.py"
EXAMPLES = ("bank", "calculator", "quickstart", "tcp_tls_service")


def _rpc(module: str) -> RPCServer:
    rpc = importlib.import_module(module).rpc
    assert isinstance(rpc, RPCServer)
    return rpc


def _bank_source() -> str:
    return generate_stubs(_rpc("examples.bank").discovery.document(everything=True))


def _shop_rpc() -> RPCServer:
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))
    return _rpc("shop_app")


def test_golden_bank_stubs_are_byte_stable() -> None:
    """The generated bank module is exactly the golden file, every time, from the API and
    from the command line."""
    source = _bank_source()
    assert source == GOLDEN.read_text(encoding="utf-8"), (
        "regenerate: safe-rpc stubs examples.bank:rpc --out tests/golden/bank_client.py"
    )
    assert _bank_source() == source
    done = subprocess.run(
        [sys.executable, "-m", "safe_rpc", "stubs", "examples.bank:rpc"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == source


# -- a hostile document -----------------------------------------------------------------------

_EVIL = "x\"); import os; os.system('touch pwned'); (\""
HOSTILE: dict[str, Any] = {
    "openrpc": "1.3.2",
    "info": {"title": 'Evil"""\nimport os\n"""', "version": "1\n__import__('os')"},
    "methods": [
        {
            "name": "__import__('os').system('touch pwned')",
            "description": '"""; import os; os.system("touch pwned"); """\\',
            "params": [
                {
                    "name": "__class__",
                    "required": True,
                    "schema": {"type": "string", "pattern": '"""\n\'; import os\\'},
                },
                {"name": "class", "schema": {"$ref": f"#/components/schemas/{_EVIL}"}},
                {"name": "self", "required": True, "schema": {"enum": ['a"b', "c'd", "\u2028"]}},
                {"name": "params", "required": True, "schema": {"type": "integer"}},
                {"name": "raw", "schema": {"type": "array", "items": {"type": "number"}}},
                {"name": "Omitted", "required": True, "schema": {"const": "\U0001f600"}},
                {"name": "isinstance", "required": True, "schema": {"type": "boolean"}},
                {"name": "dict", "schema": {"type": "object"}},
            ],
            "result": {"name": "r", "schema": {"type": "integer", "minimum": 0}},
            "errors": [
                {
                    "code": 7,
                    "message": 'bad"""\nimport os',
                    "data": {"$ref": f"#/components/schemas/{_EVIL}"},
                },
                {"code": -32001, "message": "reserved codes stay the library's"},
            ],
        },
        {"name": "ok\nimport os", "params": [], "result": {"name": "r", "schema": {}}},
        {"name": "close", "params": [], "result": {"name": "r", "schema": {"type": "null"}}},
    ],
    "components": {
        "schemas": {
            _EVIL: {
                "type": "object",
                "description": "'''\n\"\"\"\\",
                "properties": {
                    "model_config": {"type": "string"},
                    "__init__": {"type": "integer", "default": 3},
                    "def": {"type": "string", "default": '"""\\n'},
                    "json": {"type": "boolean"},
                    "copy": {"type": ["string", "null"]},
                    "str": {"type": "string", "default": "shadow"},
                    "datetime": {"type": "string", "format": "date-time"},
                },
                "required": ["model_config"],
            },
            "Client": {"type": "string"},
            "9lives": {"enum": [1, 2]},
        }
    },
}

_ALLOWED_IMPORTS = {
    "__future__", "json", "datetime", "ssl", "typing", "uuid", "pydantic", "safe_rpc",
}  # fmt: skip


def test_hostile_document_cannot_inject_code(tmp_path: Path) -> None:
    """Names like ``__import__('os')``, docstrings with triple quotes, backslashes and
    newlines, and colliding names all come out as validated identifiers, escaped literals
    and inert docstrings: the module imports nothing else, calls nothing it was not meant
    to, and importing it does nothing."""
    source = generate_stubs(HOSTILE)
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            modules += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert set(modules) <= _ALLOWED_IMPORTS, modules
        if isinstance(node, ast.Name):
            assert node.id not in {"__import__", "eval", "exec", "os", "open", "compile"}
        if isinstance(node, ast.Attribute):
            assert not node.attr.startswith("__"), node.attr
            assert node.attr != "system"
    (tmp_path / "hostile_client.py").write_text(source)
    done = subprocess.run(
        [sys.executable, "-c", "import hostile_client as m; print(len(m.ERRORS.__dict__))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "pwned").exists()
    assert "'touch pwned'" in source or '"touch pwned"' in source or "touch pwned" in source


@pytest.mark.parametrize(
    "document",
    [
        {"methods": "nope"},
        {"methods": [{"name": 1}]},
        {"methods": [{"name": "a"}, {"name": "a"}]},
        {"methods": [{"name": "a", "result": {"schema": {"$ref": "#/components/schemas/N"}}}]},
        {"methods": [{"name": "a", "result": {"schema": {"$ref": "http://evil/"}}}]},
        {"methods": [{"name": "a", "result": {"schema": {"type": "quaternion"}}}]},
        {"methods": [{"name": "a", "params": [{"schema": {}}]}]},
    ],
)
def test_documents_that_cannot_be_described_are_refused(document: dict[str, Any]) -> None:
    """A dangling or foreign $ref, an unknown type, unnamed or duplicate methods: StubError
    with a message, never half a module."""
    with pytest.raises(StubError):
        generate_stubs(document)


# -- the generated modules type-check and lint ------------------------------------------------


def test_generated_modules_pass_mypy_strict_and_ruff(tmp_path: Path) -> None:
    """Stubs for every example service, the shop and the hostile document pass
    ``mypy --strict``, ``ruff check`` and ``ruff format --check`` (ruff's own defaults plus
    the project's rule set, safe_rpc being a third-party package there)."""
    files = []
    for name in EXAMPLES:
        document = _rpc(f"examples.{name}").discovery.document(everything=True)
        files.append(tmp_path / f"{name}_client.py")
        files[-1].write_text(generate_stubs(document))
    files.append(tmp_path / "shop_client.py")
    files[-1].write_text(generate_stubs(_shop_rpc().discovery.document(everything=True)))
    files.append(tmp_path / "hostile_client.py")
    files[-1].write_text(generate_stubs(HOSTILE))
    names = [f.name for f in files]
    tools = Path(sys.executable).parent
    mypy = subprocess.run(
        [str(tools / "mypy"), "--strict", "--no-incremental", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    rules = "E,F,W,I,B,UP,PIE,SIM,RUF,S,C4"
    for command in (
        ["check", "--isolated", "--select", rules, "--target-version", "py311"],
        ["format", "--check", "--isolated"],
    ):
        ruff = subprocess.run(
            [str(tools / "ruff"), *command, *names],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ruff.returncode == 0, ruff.stdout + ruff.stderr


# -- against a real server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Keyring]]:
    keys = tmp_path_factory.mktemp("bank") / "keys.json"
    ring = Keyring.generate(audience="bank")
    ring.to_file(keys)
    with serve("examples.bank:rpc", "--keys", str(keys), cwd=REPO_ROOT) as server:
        yield server, ring


def test_stubs_round_trip_typed_values(bank: tuple[Server, Keyring]) -> None:
    """The golden stubs against the real bank: ints, a model with nested models, datetimes
    and UUIDs arrive typed; a UUID goes out as an argument; Field constraints hold on both
    sides; the declared error arrives as the stub's own class with its Data model."""
    from golden import bank_client

    server, ring = bank
    token = ring.issue("stubby", ["account:read", "account:write"])
    with bank_client.BankClient(server.url, token=token) as c:
        assert c.bank_rates() == {"savings": 0.02, "checking": 0.0}
        assert c.account_deposit(40) == 40
        assert c.account_withdraw(amount=15) == 25
        statement = c.account_statement()
        assert isinstance(statement, bank_client.Statement)
        assert statement.balance == 25
        assert isinstance(statement.as_of, datetime)
        assert statement.as_of.tzinfo is not None
        first = statement.entries[0]
        assert isinstance(first, bank_client.Entry)
        assert isinstance(first.id, uuid.UUID)
        assert isinstance(first.at, datetime)
        assert [e.amount for e in statement.entries] == [40, -15]
        assert c.account_entry(first.id) == first
        assert c.account_entry(uuid.uuid4()) is None
        with pytest.raises(bank_client.InsufficientFunds) as info:
            c.account_withdraw(1_000)
        assert isinstance(info.value.data, bank_client.InsufficientFundsData)
        assert (info.value.data.balance, info.value.data.requested) == (25, 1_000)
        with pytest.raises(InvalidParams):
            c.account_deposit(0)  # Field(gt=0) on the server
        assert c.account_balance() == 25
    with pytest.raises(ValidationError):
        bank_client.Entry(id=uuid.uuid4(), at=datetime.now(), amount=2_000_000)

    async def run() -> int:
        async with bank_client.AsyncBankClient(server.url, token=token) as c:
            statement = await c.account_statement()
            assert isinstance(statement.entries[-1].at, datetime)
            return await c.account_balance()

    assert asyncio.run(run()) == 25


def test_cli_stubs_from_a_url_follow_the_tokens_view(
    bank: tuple[Server, Keyring], tmp_path: Path
) -> None:
    """``safe-rpc stubs URL --token T --out F`` writes the module for what T may call."""
    server, ring = bank
    token = ring.issue("w", ["account:write"])
    out = tmp_path / "writer_client.py"
    done = subprocess.run(
        [sys.executable, "-m", "safe_rpc", "stubs", server.url, "--token", token,
         "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with Client(server.url, token=token) as c:
        assert out.read_text() == generate_stubs(c.discover())
    text = out.read_text()
    assert "def account_withdraw(" in text
    assert "account_statement" not in text
    assert "class Statement" not in text
    bad = subprocess.run(
        [sys.executable, "-m", "safe_rpc", "stubs", server.url, "--token", "garbage"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1


# -- two services, one error code -------------------------------------------------------------


def test_two_services_with_overlapping_error_codes(
    bank: tuple[Server, Keyring], tmp_path: Path
) -> None:
    """The bank and the shop both use code 1001. Each generated module has its own registry,
    so one process raises the bank's class for the bank's 1001 and the shop's for the
    shop's; a hand-written client does the same with a registry per client."""
    from golden import bank_client

    shop_source = generate_stubs(_shop_rpc().discovery.document(everything=True))
    (tmp_path / "shop_client.py").write_text(shop_source)
    sys.path.insert(0, str(tmp_path))
    try:
        shop_client: Any = importlib.import_module("shop_client")
    finally:
        sys.path.remove(str(tmp_path))
    bank_server, ring = bank
    command = [sys.executable, "-m", "safe_rpc", "serve", "shop_app:rpc", "--http", "127.0.0.1:0"]
    with started(command, expect={"http"}, cwd=APPS) as shop_server:
        token = ring.issue("both", ["account:write"])
        with (
            bank_client.BankClient(bank_server.url, token=token) as to_bank,
            shop_client.ShopClient(shop_server.url) as to_shop,
        ):
            with pytest.raises(bank_client.InsufficientFunds) as from_bank:
                to_bank.account_withdraw(10**6)
            with pytest.raises(shop_client.OutOfStock) as from_shop:
                to_shop.shop_take("ABC-123", 5)
            assert from_bank.value.code == from_shop.value.code == 1001
            assert from_shop.value.data.available == 2
            item = to_shop.shop_item("ABC-123")
            assert (item.colour, item.restock, item.tags) == ("red", item.restock, ("new", 1))
            assert to_shop.shop_item("ABC-123", "green").colour == "green"
            assert to_shop.shop_take("ABC-123") == 1  # the optional count left out
        # By hand: a registry per client, built from ErrorRegistry.standard().
        from shop_app import ERRORS, OutOfStock

        with Client(shop_server.url, errors=ERRORS) as plain, pytest.raises(OutOfStock):
            plain.shop.take("ABC-123", 9)
