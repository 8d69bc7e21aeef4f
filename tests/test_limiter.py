"""The failed-authentication limiter on its own (SR-40): window, bound, configuration.

The transports' use of it over real sockets is in test_http_server.py and test_tcp.py; here
its sliding window is driven by the clock it takes as an argument.
"""

from __future__ import annotations

import pytest

from safe_rpc import ConfigError, FailedAuthLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sr40_blocks_after_per_minute_failures_until_the_window_passes() -> None:
    """The N-th failure in a minute blocks the source; it is free again 60 s later."""
    clock = Clock()
    limiter = FailedAuthLimiter(3, clock=clock)
    assert not limiter.blocked("10.0.0.1")
    for _ in range(3):
        assert not limiter.blocked("10.0.0.1")
        limiter.record_failure("10.0.0.1")
        clock.now += 1
    assert limiter.blocked("10.0.0.1")
    assert not limiter.blocked("10.0.0.2")  # per source
    clock.now += 58.5  # the first failure left the window: one more attempt allowed
    assert not limiter.blocked("10.0.0.1")
    clock.now += 10  # all left the window: the source is forgotten
    assert not limiter.blocked("10.0.0.1")
    limiter.record_failure("10.0.0.1")
    assert not limiter.blocked("10.0.0.1")


def test_sr40_memory_is_bounded_by_max_sources() -> None:
    """Past max_sources the least recently failing source is forgotten first."""
    clock = Clock()
    limiter = FailedAuthLimiter(1, clock=clock, max_sources=2)
    limiter.record_failure("a")
    limiter.record_failure("b")
    limiter.record_failure("a")  # "a" is now the most recent
    limiter.record_failure("c")  # evicts "b"
    assert limiter.blocked("a")
    assert limiter.blocked("c")
    assert not limiter.blocked("b")


@pytest.mark.parametrize(("per_minute", "max_sources"), [(0, 10), (10, 0)])
def test_bad_settings_are_refused(per_minute: int, max_sources: int) -> None:
    """A non-positive setting is a ConfigError at construction."""
    with pytest.raises(ConfigError, match="must be positive"):
        FailedAuthLimiter(per_minute, max_sources=max_sources)
