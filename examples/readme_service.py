"""The service the README's client snippets call: ``add``, ``account.withdraw``, ``log.event``.

Start it as the README shows (the key and token files go in ``.safe-rpc/``, which
``.gitignore`` covers)::

    mkdir -p .safe-rpc
    safe-rpc keygen --out .safe-rpc/keys.json --audience readme
    safe-rpc token --keys .safe-rpc/keys.json --subject alice --scope account:write \\
        > .safe-rpc/alice.token
    safe-rpc serve examples.readme_service:rpc --keys .safe-rpc/keys.json
"""

from __future__ import annotations

from pydantic import BaseModel

from safe_rpc import RPCError, RPCServer

rpc = RPCServer()  # `safe-rpc serve --keys FILE` (or SAFE_RPC_KEY_FILE) attaches the keyring
_balance = {"value": 100}


class InsufficientFunds(RPCError, register=False):  # clients declare their own class for 1001
    code = 1001
    message = "insufficient funds"

    class Data(BaseModel):
        balance: int


@rpc.method(public=True)
def add(a: int, b: int) -> int:
    return a + b


@rpc.method(name="account.withdraw", scopes=["account:write"])
def withdraw(amount: int) -> int:
    if amount > _balance["value"]:
        raise InsufficientFunds(data={"balance": _balance["value"]})
    _balance["value"] -= amount
    return _balance["value"]


@rpc.method(name="log.event", public=True)
def log_event(name: str) -> None:
    return None
