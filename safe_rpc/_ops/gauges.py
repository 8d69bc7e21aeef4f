"""Process-wide counts the transports keep for metrics (open connections per transport)."""

from __future__ import annotations

import collections
from typing import Final

__all__ = ["OPEN_CONNECTIONS"]

#: Connections open right now in this process, by transport name ("http", "tcp", ...).
OPEN_CONNECTIONS: Final[collections.Counter[str]] = collections.Counter()
