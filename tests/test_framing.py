"""The sans-IO length-prefix framer (issue 5, SR-27)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safe_rpc._core.framing import FrameError, FrameReader, encode_frame


def test_frames_split_and_joined_arbitrarily() -> None:
    """Frames come out whole whether bytes arrive one at a time or several frames at once."""
    stream = encode_frame(b"abc") + encode_frame(b"de")
    reader = FrameReader(100)
    out = []
    for byte in stream:
        reader.feed(bytes([byte]))
        while (frame := reader.next_frame()) is not None:
            out.append(frame)
    assert out == [b"abc", b"de"]
    reader.feed(stream)
    assert [reader.next_frame(), reader.next_frame(), reader.next_frame()] == [b"abc", b"de", None]


def test_sr27_length_checked_before_any_payload() -> None:
    """0xFFFFFFFF is refused from the 4 header bytes alone; nothing is buffered for it."""
    reader = FrameReader(8192)
    reader.feed(b"\xff\xff\xff\xff")
    with pytest.raises(FrameError) as info:
        reader.next_frame()
    assert info.value.too_large
    assert reader.buffered == 4


def test_empty_frame_is_an_error() -> None:
    """Length 0 is not a message."""
    reader = FrameReader(10)
    reader.feed(b"\x00\x00\x00\x00")
    with pytest.raises(FrameError) as info:
        reader.next_frame()
    assert not info.value.too_large


def test_limit_can_be_raised_between_frames() -> None:
    """The pre-auth limit applies until it is raised."""
    reader = FrameReader(3)
    reader.feed(encode_frame(b"abcd"))
    with pytest.raises(FrameError):
        reader.next_frame()
    reader.max_frame = 4
    assert reader.next_frame() == b"abcd"


def test_encode_frame_bounds() -> None:
    """An empty payload cannot be framed."""
    with pytest.raises(ValueError, match="frame"):
        encode_frame(b"")


@given(st.lists(st.binary(min_size=1, max_size=50), max_size=8), st.data())
def test_any_chunking_gives_the_same_frames(payloads: list[bytes], data: st.DataObject) -> None:
    """Property: for any split of the stream, the frames are the payloads in order."""
    stream = b"".join(encode_frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = FrameReader(50)
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        reader.feed(stream[start:end])
        while (frame := reader.next_frame()) is not None:
            out.append(frame)
    assert out == payloads
