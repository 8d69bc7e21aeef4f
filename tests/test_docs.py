"""The API reference (docs/api.md, built by `mkdocs build --strict` in scripts/check) lists
exactly the public names, so a name added to ``safe_rpc.__all__`` cannot go undocumented."""

from __future__ import annotations

import re

from servers import REPO_ROOT

import safe_rpc


def test_api_reference_lists_exactly_the_public_names() -> None:
    """One `::: safe_rpc.NAME` block per name in __all__ (the version string aside)."""
    text = (REPO_ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    listed = re.findall(r"^::: safe_rpc\.(\w+)$", text, re.M)
    assert len(listed) == len(set(listed)), "a name is listed twice"
    assert set(listed) == set(safe_rpc.__all__) - {"__version__"}


def test_changelog_starts_at_the_first_release() -> None:
    """CHANGELOG.md keeps an Unreleased section above the released versions, 0.1.0 first."""
    text = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert versions[0] == "Unreleased"
    assert versions[-1] == "0.1.0"
