"""Shared pieces of the atheris harnesses: the invariant every target must keep."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

ALLOWED_CODES = frozenset(
    {-32700, -32600, -32601, -32602, -32603, -32001, -32002, -32003, -32004, -32007, -32008,
     -32009, -32010}
)  # fmt: skip


def check_wire_answer(raw: bytes | None) -> None:
    """The invariant: nothing, or strict UTF-8 JSON-RPC with only library error codes."""
    if raw is None:
        return
    value: Any = json.loads(raw.decode("utf-8"))
    for entry in value if isinstance(value, list) else [value]:
        assert entry["jsonrpc"] == "2.0"
        assert ("result" in entry) != ("error" in entry)
        if "error" in entry:
            assert entry["error"]["code"] in ALLOWED_CODES, entry
