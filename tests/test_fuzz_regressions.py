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


def test_regression_non_ascii_payload_segment_is_unauthenticated() -> None:
    """fuzz/tokens.py found it: a non-ASCII character in the payload segment escaped
    Keyring.verify as UnicodeEncodeError instead of Unauthenticated (a 500 over HTTP)."""
    import pytest

    from safe_rpc import Keyring, Unauthenticated

    ring = Keyring({"k1": bytes(range(32))}, audience="fuzz")
    header, payload, signature = ring.issue("a", ["s"]).split(".")
    for token in (f"{header}.{payload}\ufffd.{signature}", f"{header}.{payload}.é{signature}"):
        with pytest.raises(Unauthenticated):
            ring.verify(token)
    rpc = make_fuzz_server()
    rpc.keyring = ring
    answer = rpc.dispatch(NORMAL, token=f"{header}.\u00e9{payload}.{signature}")
    assert answer is not None
    assert b"-32001" in answer
