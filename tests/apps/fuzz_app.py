"""The fuzz server of tests/fuzz_server.py, importable by `safe-rpc serve fuzz_app:rpc`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fuzz_server import make_fuzz_server

rpc = make_fuzz_server()
