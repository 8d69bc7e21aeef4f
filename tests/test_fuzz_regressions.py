"""Every crasher, hang or blow-up the fuzzers ever found, as a named test (issue 6)."""

from __future__ import annotations

from fuzz_server import NORMAL, NORMAL_ANSWER, make_fuzz_server, traced_peak
from strategies import check_answer

RPC = make_fuzz_server()


def test_regression_depth_scan_does_not_materialise_bracket_runs() -> None:
    """'[{"":' x 50,000 is rejected by depth without memory proportional to its size."""
    body = b'[{"":' * 50_000
    raw, peak = traced_peak(lambda: RPC.dispatch(body))
    assert peak < 2 * len(body) + 64 * 1024
    check_answer(body, raw)
    assert RPC.dispatch(NORMAL) == NORMAL_ANSWER
