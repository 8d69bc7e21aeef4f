"""The service the README's client snippets talk to (tests/test_readme.py runs them)."""

from __future__ import annotations

from pydantic import BaseModel

from safe_rpc import Keyring, RPCError, RPCServer

keyring = Keyring({"readme": b"r" * 32}, audience="readme")
rpc = RPCServer(keyring=keyring)
_balance = {"value": 100}


class InsufficientFunds(RPCError, register=False):  # the client side has its own class
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
