"""``/healthz`` and ``/readyz`` for an ``ASGIApp``: liveness and readiness probes.

Both answer ``GET`` (and ``HEAD``) without a token, before the ``Host`` check (a probe from
the platform uses the pod address as Host, and a status carries nothing a rebinding attack
could read). The body is only ``ok``, ``draining`` or ``not ready``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Final

__all__ = ["READINESS_TIMEOUT", "Readiness", "is_ready", "probe_answer"]

logger = logging.getLogger("safe_rpc.ops")

#: ``ASGIApp(readiness=...)``: True when the service's dependencies answer (for example a
#: shared store's ``ping``); may be sync or async. False, an exception, or no answer within
#: ``READINESS_TIMEOUT`` seconds all mean "not ready".
Readiness = Callable[[], bool | Awaitable[bool]]
READINESS_TIMEOUT: Final = 2.0

_HEADERS: Final = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]


async def is_ready(readiness: Readiness | None) -> bool:
    if readiness is None:
        return True
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            answer = readiness()
            if inspect.isawaitable(answer):
                answer = await answer
    except Exception as exc:  # TimeoutError included: a hung dependency is not ready
        logger.warning("readiness check failed: %s", type(exc).__name__)
        return False
    return answer is True


def probe_answer(status: int, text: bytes, head: bool) -> list[dict[str, object]]:
    """The two ASGI messages of a probe answer."""
    headers = [*_HEADERS, (b"content-length", str(len(text)).encode())]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": b"" if head else text},
    ]
