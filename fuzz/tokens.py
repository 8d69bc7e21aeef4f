"""Coverage-guided fuzzing of the token verifier (atheris).

Invariant: ``Keyring.verify`` raises nothing but ``Unauthenticated`` for any string; and
when it accepts a token (the seed corpus holds one signed with the harness key), changing
any single character of it makes it rejected: one token has one spelling.

    python fuzz/tokens.py fuzz/corpus/tokens -max_total_time=600
"""

from __future__ import annotations

import sys

import _common  # noqa: F401  # sets sys.path for the imports below
import atheris

with atheris.instrument_imports():
    from safe_rpc import Keyring, Unauthenticated

RING = Keyring({"k1": bytes(range(32))}, audience="fuzz")


def test_one_input(data: bytes) -> None:
    token = data.decode("utf-8", "replace")
    try:
        RING.verify(token)
    except Unauthenticated:
        return
    for i in range(len(token)):
        altered = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        try:
            RING.verify(altered)
        except Unauthenticated:
            continue
        raise AssertionError(f"a one-character change at {i} was still accepted")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
