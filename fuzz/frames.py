"""Coverage-guided fuzzing of the TCP frame reader (atheris).

Invariant: for any byte stream fed in any chunking, ``FrameReader`` yields exactly the
frames a straightforward reference cut gives, raises only ``FrameError``, and never holds
more than the input it was fed.

    python fuzz/frames.py fuzz/corpus/frames -max_total_time=600
"""

from __future__ import annotations

import sys

import _common  # noqa: F401  # sets sys.path for the imports below
import atheris

with atheris.instrument_imports():
    from safe_rpc._core.framing import FrameError, FrameReader

LIMIT = 64


def reference(stream: bytes) -> tuple[list[bytes], bool]:
    frames: list[bytes] = []
    pos = 0
    while len(stream) - pos >= 4:
        length = int.from_bytes(stream[pos : pos + 4], "big")
        if not 0 < length <= LIMIT:
            return frames, True
        if len(stream) - pos - 4 < length:
            break
        frames.append(stream[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return frames, False


def test_one_input(data: bytes) -> None:
    if not data:
        return
    step = data[0] % 7 + 1
    stream = data[1:]
    reader = FrameReader(LIMIT)
    frames: list[bytes] = []
    failed = False
    for start in range(0, len(stream), step):
        reader.feed(stream[start : start + step])
        assert reader.buffered <= len(stream)
        try:
            while (frame := reader.next_frame()) is not None:
                frames.append(frame)
        except FrameError:
            failed = True
            break
    expected, expected_failure = reference(stream)
    assert frames == expected[: len(frames)]
    assert failed == expected_failure or (not failed and frames == expected)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
