"""A second service whose application error reuses the bank example's code 1001.

Both are legitimate: error codes belong to a service, not to the process. The shop keeps its
error out of the process-wide registry (``register=False``) and in one of its own, as a
client that talks to both services must do too (tests/test_stubs.py).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from safe_rpc import ErrorRegistry, RPCError, RPCServer


class OutOfStock(RPCError, register=False):
    """The shelf holds fewer items than asked for."""

    code = 1001  # the bank's InsufficientFunds uses 1001 too
    message = "out of stock"

    class Data(BaseModel):
        sku: str
        available: int


ERRORS = ErrorRegistry.standard()
ERRORS.add(OutOfStock)


class Item(BaseModel):
    """An item on a shelf."""

    sku: Annotated[str, Field(pattern=r"^[A-Z]{3}-\d{3}$")]
    colour: Literal["red", "green"] = "red"
    restock: date | None = None
    tags: tuple[str, int] = ("new", 1)


rpc = RPCServer(title="Shop", version="2.1", errors=ERRORS)
_shelf = {"ABC-123": 2}


@rpc.method(name="shop.take", public=True, errors=[OutOfStock])
def take(sku: str, count: int = 1) -> int:
    """Take ``count`` items; returns what is left."""
    available = _shelf.get(sku, 0)
    if count > available:
        raise OutOfStock(data={"sku": sku, "available": available})
    _shelf[sku] = available - count
    return available - count


@rpc.method(name="shop.item", public=True)
def item(sku: str, colour: Literal["red", "green"] = "red") -> Item:
    """An item, with a default colour."""
    return Item(sku=sku, colour=colour, restock=date(2030, 1, 2))
