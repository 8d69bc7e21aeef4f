"""Quotas, single-use tokens and revocation freshness: the per-call checks on the store.

``RPCServer`` plugs a ``StoreAdmission`` into the pipeline (``safe_rpc._core.admission``).
Every check here is one store operation at most, bounded by ``Limits.store_timeout``; when
the store fails, quotas and single-use checks answer -32009 unless the server was built
with ``quota_failure="open"``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from .._core.admission import Verdict
from .._core.context import Principal
from .._core.errors import ConfigError, RateLimited, ServerBusy, Unauthenticated
from .._core.logs import log_safe
from .._core.registry import MethodSpec
from .base import Rule, Store, StoreUnavailable, health_of, retry_after
from .revocations import RevocationView

__all__ = ["Rate", "StoreAdmission", "StoreOp", "parse_rate"]

logger = logging.getLogger("safe_rpc.store")

_PERIODS: Final = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE: Final = re.compile(r"\s*([1-9][0-9]{0,8})\s*/\s*(second|minute|hour|day)\s*")

Rate = tuple[int, float]


def parse_rate(text: str) -> Rate:
    """``"5/minute"`` -> ``(5, 60.0)``.

    Raises:
        ConfigError: for anything but ``N/second``, ``N/minute``, ``N/hour``, ``N/day``.
    """
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"rate {text!r} must look like '5/minute' (per second/minute/hour/day)")
    return int(match[1]), _PERIODS[match[2]]


class StoreOp:
    """A store call for the driver: ``run_sync`` or ``run_async``; never raises, a
    failure comes back as the ``StoreUnavailable`` instance."""

    __slots__ = ("args", "func", "func_async", "health", "store", "timeout")

    def __init__(
        self,
        store: Store,
        func: Callable[..., Any],
        func_async: Callable[..., Any],
        args: tuple[Any, ...],
        timeout: float,
        health: bool = True,
    ) -> None:
        self.store = store
        self.health = health
        self.func = func
        self.func_async = func_async
        self.args = args
        self.timeout = timeout

    def run_sync(self) -> Any:
        try:
            result = self.func(*self.args)
        except StoreUnavailable as exc:
            health_of(self.store).failed(exc)
            return exc
        if self.health:
            health_of(self.store).ok()
        return result

    async def run_async(self) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                result = await self.func_async(*self.args)
        except (StoreUnavailable, TimeoutError) as exc:
            health_of(self.store).failed(exc)
            if isinstance(exc, StoreUnavailable):
                return exc
            return StoreUnavailable("timed out", reason="timed out")
        if self.health:
            health_of(self.store).ok()
        return result


class StoreAdmission:
    """The ``Admission`` of an ``RPCServer`` (see ``safe_rpc._core.admission``)."""

    def __init__(
        self,
        store: Store,
        *,
        rate: Rate | None,
        method_rates: Mapping[str, Rate],
        fail_open: bool,
        timeout: float,
        view: Callable[[], RevocationView | None],
        leeway: Callable[[], float],
    ) -> None:
        self.store = store
        self.rate = rate
        self.method_rates = method_rates
        self.fail_open = fail_open
        self.timeout = timeout
        self._view = view
        self._leeway = leeway

    def _op(self, func: Callable[..., Any], func_async: Callable[..., Any], *args: Any) -> StoreOp:
        return StoreOp(self.store, func, func_async, args, self.timeout)

    def message(self, principal: Principal) -> Verdict:
        if principal.claims.get("once") is not True:
            return None
        # Single-use: the first message that presents this jti claims it, fleet-wide, until
        # the token could no longer be accepted anyway.
        until = (principal.expires_at or 0.0) + self._leeway()
        key = f"once:{principal.token_id}"
        result = yield self._op(self.store.claim, self.store.claim_async, key, until)
        if result is True:
            return None
        if result is False:
            logger.info("single-use token of %s presented again", log_safe(principal.subject))
            return Unauthenticated()
        return None if self.fail_open else ServerBusy()

    def element(self, spec: MethodSpec, principal: Principal | None, client: str | None) -> Verdict:
        view = self._view() if not spec.public else None
        if view is not None and view.shared and not view.fresh():
            if view.needs_refresh():
                # Idle (or the poller failed): read the store once before deciding, and
                # re-check the caller against what it says.
                op = StoreOp(self.store, view.refresh_sync, view.refresh, (), self.timeout, False)
                yield op
                if principal is not None and view.revoked_principal(principal):
                    return Unauthenticated()
            if view.too_stale():
                # Revocations could be missing: a private call cannot be decided safely.
                return ServerBusy()
        if self.rate is None and spec.name not in self.method_rates:
            return None
        rules = self.rules(spec, principal, client)
        result = yield self._op(self.store.hit, self.store.hit_async, rules)
        if isinstance(result, StoreUnavailable):
            return None if self.fail_open else ServerBusy()
        admitted, wait = result
        if admitted:
            return None
        return RateLimited(data={"retry_after": retry_after(wait)})

    def rules(
        self, spec: MethodSpec, principal: Principal | None, client: str | None
    ) -> Sequence[Rule]:
        method_rate = self.method_rates.get(spec.name)
        if self.rate is None and method_rate is None:
            return ()
        # Per principal; an anonymous caller is its client address.
        who = f"s:{principal.subject}" if principal is not None else f"a:{client or '-'}"
        rules = []
        if self.rate is not None:
            rules.append(Rule(f"*:{who}", *self.rate))
        if method_rate is not None:
            rules.append(Rule(f"m:{spec.name}:{who}", *method_rate))
        return rules
