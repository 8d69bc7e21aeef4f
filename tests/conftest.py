"""Shared fixtures. Tests import the *installed* safe_rpc; the repository root is appended
to sys.path only so that ``examples`` can be imported."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
