"""Coverage-guided fuzzing of the strict parser (atheris).

Invariant: ``StrictJSON.loads`` raises nothing but ``JSONError``, agrees with the
independent reference parser of ``tests/strategies.py``, and whatever it accepts re-encodes
with ``dumps_strict``.

    python fuzz/parser.py fuzz/corpus/parser -max_total_time=600
"""

from __future__ import annotations

import sys

import _common  # noqa: F401  # sets sys.path for the imports below
import atheris

with atheris.instrument_imports():
    from strategies import LIMITS, reference_parse

    from safe_rpc._core.json import JSONError, StrictJSON, dumps_strict

PARSER = StrictJSON(
    max_depth=LIMITS.max_depth,
    max_object_members=LIMITS.max_object_members,
    max_array_items=LIMITS.max_array_items,
)


def test_one_input(data: bytes) -> None:
    try:
        value = PARSER.loads(data)
    except JSONError:
        accepted = False
    else:
        accepted = True
        dumps_strict(value)
    assert accepted == reference_parse(data)[0], data


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
