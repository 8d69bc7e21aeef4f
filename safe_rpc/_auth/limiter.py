"""Counting failed authentications per caller source (SR-40).

Transports ask ``blocked(source)`` before verifying a credential and call
``record_failure(source)`` after a failure; a blocked source gets HTTP 429 or a closed TCP
connection without any verification work. Memory is bounded: at most ``max_sources``
sources are tracked, the least recently failing one is forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from .._core.errors import ConfigError

__all__ = ["FailedAuthLimiter"]

WINDOW = 60.0  # seconds: the limit is "failures per minute"


class FailedAuthLimiter:
    """An in-memory sliding-window limiter of failed authentications per source.

    Args:
        per_minute: failures allowed per source in any 60 s window; the next attempt is
            blocked until the oldest failure leaves the window.
        clock: monotonic seconds (injectable for tests).
        max_sources: most sources remembered at once.
    """

    def __init__(
        self,
        per_minute: int = 10,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 10_000,
    ) -> None:
        if per_minute < 1 or max_sources < 1:
            raise ConfigError(
                f"per_minute and max_sources must be positive (got {per_minute}, {max_sources})"
            )
        self.per_minute = per_minute
        self.max_sources = max_sources
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked(self, source: str) -> bool:
        """True if ``source`` used up its failures in the last minute."""
        times = self._failures.get(source)
        if times is None:
            return False
        horizon = self._clock() - WINDOW
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[source]
            return False
        return len(times) >= self.per_minute

    def record_failure(self, source: str) -> None:
        """Count one failed authentication from ``source``."""
        times = self._failures.get(source)
        if times is None:
            times = self._failures[source] = deque(maxlen=self.per_minute)
            while len(self._failures) > self.max_sources:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(source)
        times.append(self._clock())
