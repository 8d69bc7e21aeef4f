"""The server the hostile-peer tests attack: deadlines of about a second, a cap
of 4 connections per address, a method with a large answer and nested parameter types."""

from __future__ import annotations

import asyncio
import dataclasses

from pydantic import BaseModel
from typing_extensions import TypedDict

from safe_rpc import Limits, RPCServer

LIMITS = Limits(
    header_timeout=1.0,
    body_timeout=1.5,
    keepalive_timeout=1.0,
    write_timeout=1.0,
    call_timeout=5.0,
    max_connections=12,
    max_connections_per_client=4,
)
rpc = RPCServer(limits=LIMITS)


class Point(BaseModel):  # no model_config: pydantic's default ignores unknown members
    x: int
    y: int


class Shape(BaseModel):
    corner: Point


@dataclasses.dataclass
class Size:
    w: int


class Tag(TypedDict):
    name: str


@rpc.method(public=True)
def add(a: int, b: int) -> int:
    return a + b


@rpc.method(public=True)
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@rpc.method(public=True)
def huge(size: int) -> str:
    """An answer of ``size`` bytes (up to max_response_bytes): for peers that never read."""
    return "x" * size


@rpc.method(public=True)
def norm(p: Point) -> int:
    return abs(p.x) + abs(p.y)


@rpc.method(public=True)
def nested(shape: Shape, size: Size, tags: list[Tag]) -> int:
    return shape.corner.x + size.w + len(tags)
