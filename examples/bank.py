"""A bank service: scopes, application errors with typed data, and async handlers.

Serve it (tokens required for everything but ``bank.rates``):

    safe-rpc keygen --out bank-keys.json --audience bank
    safe-rpc serve examples.bank:rpc --keys bank-keys.json
    safe-rpc token --keys bank-keys.json --subject alice --scope account:read --scope account:write

Every account belongs to the token's subject: the library decides *which methods* a caller
may use (scopes), the handler decides *which objects* (``ctx.principal.subject``).
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from safe_rpc import Context, RPCError, RPCServer, Unauthenticated


class InsufficientFunds(RPCError):
    """The account holds less than the amount asked for."""

    code = 1001
    message = "insufficient funds"

    class Data(BaseModel):
        balance: int
        requested: int


class Statement(BaseModel):
    owner: str
    balance: int
    history: list[int]


rpc = RPCServer()  # `safe-rpc serve --keys FILE` attaches a keyring; tests pass their own
_balances: dict[str, list[int]] = {}
_lock = asyncio.Lock()


def _owner(ctx: Context) -> str:
    if ctx.principal is None:  # cannot happen for scoped methods; keeps type checkers honest
        raise Unauthenticated()
    return ctx.principal.subject


@rpc.method(name="bank.rates", public=True)
def rates() -> dict[str, float]:
    """Public: today's interest rates."""
    return {"savings": 0.02, "checking": 0.0}


@rpc.method(name="account.balance", scopes=["account:read"])
async def balance(ctx: Context) -> int:
    """The caller's own balance."""
    return sum(_balances.get(_owner(ctx), []))


@rpc.method(name="account.deposit", scopes=["account:write"])
async def deposit(ctx: Context, amount: int = Field(gt=0, le=1_000_000)) -> int:
    """Add ``amount`` to the caller's account; returns the new balance."""
    async with _lock:
        history = _balances.setdefault(_owner(ctx), [])
        history.append(amount)
        return sum(history)


@rpc.method(name="account.withdraw", scopes=["account:write"])
async def withdraw(ctx: Context, amount: int = Field(gt=0, le=1_000_000)) -> int:
    """Take ``amount`` from the caller's account, or raise ``InsufficientFunds``."""
    async with _lock:
        history = _balances.setdefault(_owner(ctx), [])
        current = sum(history)
        if amount > current:
            raise InsufficientFunds(data={"balance": current, "requested": amount})
        history.append(-amount)
        return current - amount


@rpc.method(name="account.statement", scopes=["account:read"])
async def statement(ctx: Context) -> Statement:
    """A typed result: serialised through the return annotation."""
    owner = _owner(ctx)
    history = list(_balances.get(owner, []))
    return Statement(owner=owner, balance=sum(history), history=history)
