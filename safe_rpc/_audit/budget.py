"""The one gate every request of an audit goes through: a hard count and a rate.

Transports call ``Budget.take()`` before each message they send and each connection they
open, so no check, however written, can send more than ``--max-requests`` or faster than
``--rate``. Threads share it (the slow connection probes run side by side).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Budget", "BudgetExhausted"]


class BudgetExhausted(Exception):
    """The audit has used its ``--max-requests``: nothing more is sent."""


class Budget:
    """At most ``max_requests`` takes, at most ``rate`` per second.

    ``clock`` and ``sleep`` are injectable so the pacing can be tested without waiting.
    """

    def __init__(
        self,
        max_requests: int,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_requests < 1 or not rate > 0:
            raise ValueError("max_requests must be >= 1 and rate > 0")
        self.max_requests = max_requests
        self.rate = rate
        self.used = 0
        self._clock = clock
        self._sleep = sleep
        self._next = clock()
        self._lock = threading.Lock()

    @property
    def left(self) -> int:
        return self.max_requests - self.used

    def take(self) -> None:
        """Wait for the next slot and count one request, or raise ``BudgetExhausted``."""
        with self._lock:
            if self.used >= self.max_requests:
                raise BudgetExhausted
            self.used += 1
            now = self._clock()
            wait = self._next - now
            self._next = max(now, self._next) + 1.0 / self.rate
        if wait > 0:
            self._sleep(wait)
