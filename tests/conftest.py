"""Shared fixtures. Tests import the *installed* safe_rpc; the repository root is appended
to sys.path only so that ``examples`` can be imported."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

# Fuzzing budgets (issue 6). CI runs the "ci" profile: fixed seeds, a bounded number of
# examples. SAFE_RPC_FUZZ=long runs long campaigns (optionally SAFE_RPC_FUZZ_EXAMPLES=N).
import os  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("SAFE_RPC_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
settings.load_profile("long" if os.environ.get("SAFE_RPC_FUZZ") == "long" else "ci")


def pytest_sessionstart(session: object) -> None:
    """In CI a missing third-party corpus fails the run: its tests must run, not skip."""
    from corpora import missing_in_ci

    missing = missing_in_ci()
    if missing:
        import pytest

        pytest.exit("CI needs every corpus (tests/corpora.py):\n" + "\n".join(missing), 1)


# -- a real redis-server for the store tests (README, Shared state) ------------------------
import shutil  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from redis_support import HINT, RedisServer  # noqa: E402
from store_support import Handles  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server per test session (tests isolate themselves with key prefixes)."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":  # CI installs it: a skip there would hide a gap
            pytest.fail(HINT)
        pytest.skip(HINT)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def handles() -> Iterator[Handles]:
    """Store handles opened by a test, closed at its end."""
    opened = Handles()
    yield opened
    opened.close()
