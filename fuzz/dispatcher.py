"""Coverage-guided fuzzing of the whole dispatch pipeline (atheris).

Invariant: ``RPCServer.dispatch`` never raises, answers what the oracle of
``tests/strategies.py`` predicts, and still serves a normal request afterwards.

    python fuzz/dispatcher.py fuzz/corpus/dispatcher -max_total_time=600
"""

from __future__ import annotations

import logging
import sys

import _common  # noqa: F401  # sets sys.path for the imports below
import atheris

with atheris.instrument_imports():
    from fuzz_server import NORMAL, NORMAL_ANSWER, make_fuzz_server
    from strategies import check_answer

RPC = make_fuzz_server()
logging.getLogger("safe_rpc").setLevel(logging.CRITICAL)


def test_one_input(data: bytes) -> None:
    check_answer(data, RPC.dispatch(data))
    assert RPC.dispatch(NORMAL) == NORMAL_ANSWER


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
