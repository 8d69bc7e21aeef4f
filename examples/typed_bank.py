"""Typed clients for the bank example, generated from the document the server answers.

    safe-rpc keygen --out bank-keys.json --audience bank
    safe-rpc serve examples.bank:rpc --keys bank-keys.json
    python -m examples.typed_bank http://127.0.0.1:8000/ --token "$(safe-rpc token \\
        --keys bank-keys.json --subject alice --scope account:read --scope account:write)"

It does what ``safe-rpc stubs URL --token T --out bank_client.py`` does (ask the server for
the OpenRPC document this token may see, generate a module from it), imports the module it
wrote and calls the bank through it: results arrive as their declared types (an ``int``, a
``Statement`` model holding ``Entry`` models with ``datetime`` and ``UUID`` fields), and the
bank's ``InsufficientFunds`` arrives as the generated module's own class, with its ``Data``
model, looked up in the module's own error registry.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from safe_rpc import Client, generate_stubs


def write_stubs(url: str, token: str, directory: Path) -> Path:
    """``safe-rpc stubs URL --token T --out DIRECTORY/bank_client.py``, in process."""
    with Client(url, token=token) as client:
        document = client.discover()
    path = directory / "bank_client.py"
    path.write_text(generate_stubs(document), encoding="utf-8")
    return path


def load(path: Path) -> ModuleType:
    """Import the generated file (in a real project: commit it and import it by name)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # pydantic resolves the models' forward references here
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="use generated, typed bank stubs")
    parser.add_argument("url", help="the bank's URL, e.g. http://127.0.0.1:8000/")
    parser.add_argument("--token", required=True, help="account:read account:write token")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        stubs = load(write_stubs(args.url, args.token, Path(directory)))
        with stubs.BankClient(args.url, token=args.token) as bank:
            print("balance after deposit:", bank.account_deposit(100))
            try:
                bank.account_withdraw(amount=500)
            except stubs.InsufficientFunds as error:
                print("refused:", type(error).__name__, "balance", error.data.balance)
            statement = bank.account_statement()
            entry = statement.entries[-1]
            print("statement:", type(statement).__name__, "as of", type(statement.as_of).__name__)
            print("last entry:", type(entry.id).__name__, type(entry.at).__name__, entry.amount)
            print("same entry by id:", bank.account_entry(entry.id) == entry)


if __name__ == "__main__":
    main()
