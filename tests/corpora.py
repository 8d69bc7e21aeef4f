"""Third-party corpora and schemas the tests read but the repository never holds.

Each one is a directory, found in this order:

1. the directory named by its environment variable (``SAFE_RPC_JSONTESTSUITE``...);
2. ``../shared/corpora/<name>/`` beside the repository root (present for every developer
   and in CI).

Where neither exists, the tests that need it skip with one line saying how to get it. Under
CI (``CI=true``) a missing corpus fails the run at start instead (``conftest.py``), so CI can
never pass by skipping them. A new corpus is one ``Corpus(...)`` line added to ``CORPORA``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "corpora"


def corpus_dir(name: str, env_var: str) -> Path | None:
    """The corpus directory ``name``: ``$env_var`` if set, else ``../shared/corpora/name``."""
    configured = os.environ.get(env_var)
    path = Path(configured) if configured else SHARED / name
    return path if path.is_dir() else None


@dataclasses.dataclass(frozen=True)
class Corpus:
    name: str
    env_var: str
    #: Where the upstream lives, for the hint.
    source: str

    @property
    def path(self) -> Path | None:
        return corpus_dir(self.name, self.env_var)

    def hint(self) -> str:
        """One line: how to make the tests that need this corpus run."""
        where = SHARED / self.name
        return (
            f"{self.name} not found: set {self.env_var}=DIR or put it at {where} (README: Testing)"
        )

    def require(self) -> Path:
        """The directory, or skip the calling test with the hint."""
        path = self.path
        if path is None:
            pytest.skip(self.hint())
        return path

    def files(self, subdir: str = "", prefix: str = "") -> list[Path]:
        """Files of ``subdir`` whose names start with ``prefix``, sorted; [] if absent."""
        path = self.path
        if path is None:
            return []
        return sorted(p for p in (path / subdir).iterdir() if p.name.startswith(prefix))

    def params(self, subdir: str = "", prefix: str = "") -> list[Any]:
        """pytest parameters, one per file (id = file name), or one skipped parameter."""
        if self.path is None:
            skip = pytest.mark.skip(reason=self.hint())
            return [pytest.param(None, id=f"{self.name}-missing", marks=skip)]
        return [pytest.param(p, id=p.name) for p in self.files(subdir, prefix)]


JSONTESTSUITE = Corpus(
    "JSONTestSuite",
    "SAFE_RPC_JSONTESTSUITE",
    "https://github.com/nst/JSONTestSuite, MIT; the test_parsing/ folder is what is read",
)
OPENRPC_META_SCHEMA = Corpus(
    "openrpc-meta-schema",
    "SAFE_RPC_OPENRPC_META_SCHEMA",
    "https://github.com/open-rpc/meta-schema, Apache-2.0",
)

#: Every corpus the suite reads; CI fails when one is missing (conftest.py).
CORPORA = (JSONTESTSUITE, OPENRPC_META_SCHEMA)


def missing_in_ci() -> list[str]:
    """Hints for the corpora missing while ``CI`` is set to a true value; else []."""
    if os.environ.get("CI", "").lower() not in ("true", "1", "yes"):
        return []
    return [corpus.hint() for corpus in CORPORA if corpus.path is None]
