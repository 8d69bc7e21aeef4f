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
import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from safe_rpc import Context, RPCError, RPCServer, Unauthenticated


class InsufficientFunds(RPCError):
    """The account holds less than the amount asked for."""

    code = 1001
    message = "insufficient funds"

    class Data(BaseModel):
        balance: int
        requested: int


class Entry(BaseModel):
    """One movement on an account."""

    id: uuid.UUID
    at: datetime
    amount: int = Field(ge=-1_000_000, le=1_000_000)


class Statement(BaseModel):
    owner: str
    balance: int
    history: list[int]
    entries: list[Entry] = []
    as_of: datetime


# `safe-rpc serve --keys FILE` attaches a keyring; tests pass their own. Title and version
# are what `rpc.discover` (and `safe-rpc openrpc`) report.
rpc = RPCServer(title="Bank", version="1.0.0")
_balances: dict[str, list[int]] = {}
_entries: dict[str, list[Entry]] = {}
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
        _record(_owner(ctx), amount)
        return sum(history)


@rpc.method(name="account.withdraw", scopes=["account:write"], errors=[InsufficientFunds])
async def withdraw(ctx: Context, amount: int = Field(gt=0, le=1_000_000)) -> int:
    """Take ``amount`` from the caller's account, or raise ``InsufficientFunds``."""
    async with _lock:
        history = _balances.setdefault(_owner(ctx), [])
        current = sum(history)
        if amount > current:
            raise InsufficientFunds(data={"balance": current, "requested": amount})
        history.append(-amount)
        _record(_owner(ctx), -amount)
        return current - amount


@rpc.method(name="account.statement", scopes=["account:read"])
async def statement(ctx: Context) -> Statement:
    """A typed result: serialised through the return annotation."""
    owner = _owner(ctx)
    history = list(_balances.get(owner, []))
    entries = list(_entries.get(owner, []))
    return Statement(
        owner=owner, balance=sum(history), history=history, entries=entries, as_of=_now()
    )


@rpc.method(name="account.entry", scopes=["account:read"])
async def entry(ctx: Context, entry_id: uuid.UUID) -> Entry | None:
    """One movement of the caller's account by its id (UUID in, model or null out)."""
    return next((e for e in _entries.get(_owner(ctx), []) if e.id == entry_id), None)


def _now() -> datetime:
    return datetime.now(UTC)


def _record(owner: str, amount: int) -> None:
    _entries.setdefault(owner, []).append(Entry(id=uuid.uuid4(), at=_now(), amount=amount))
