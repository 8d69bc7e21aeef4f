"""The hook through which per-call checks that need shared state reach the pipeline.

Quotas and single-use tokens need the store, and the store may need I/O. The sans-IO
pipeline cannot do I/O, so an ``Admission`` is a generator that *yields* a ``Deferred``
(an operation the driver runs: inline in ``dispatch``, awaited in ``dispatch_async``) and
returns its verdict: None to go on, or the ``RPCError`` to answer instead. The
implementation lives above the core (``safe_rpc._store.admission``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Protocol

from .context import Principal
from .errors import RPCError
from .registry import MethodSpec

__all__ = ["Admission", "Deferred", "Verdict"]


class Deferred(Protocol):
    """One store operation the pipeline needs; its driver runs it and sends the result."""

    def run_sync(self) -> Any: ...
    async def run_async(self) -> Any: ...


Verdict = Generator[Deferred, Any, RPCError | None]


class Admission(Protocol):
    """Per-message and per-call checks backed by shared state."""

    def message(self, principal: Principal) -> Verdict:
        """Once per message with a verified principal (single-use tokens)."""
        ...

    def element(self, spec: MethodSpec, principal: Principal | None, client: str | None) -> Verdict:
        """Once per call that passed authorisation (quotas, revocation freshness)."""
        ...
