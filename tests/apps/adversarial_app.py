"""The service benchmarks/adversarial.py attacks: default Limits, a few typical methods."""

from __future__ import annotations

from pydantic import BaseModel

from safe_rpc import RPCServer

rpc = RPCServer()  # default Limits: the figures are for what users get


class Point(BaseModel):
    x: int
    y: int


@rpc.method(public=True)
def add(a: int, b: int) -> int:
    return a + b


@rpc.method(public=True)
def norm(p: Point) -> int:
    return abs(p.x) + abs(p.y)
