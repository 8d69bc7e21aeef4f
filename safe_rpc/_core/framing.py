"""Length-prefixed framing for the TCP transport, sans I/O.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of UTF-8 JSON.
The length is checked against the current limit as soon as its 4 bytes are in, *before*
anything is buffered for the payload (SR-27: allocation driven by an attacker-chosen length
prefix, as in CVE-2022-35922). A zero length is an error too: there is no empty message.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HEADER", "FrameError", "FrameReader", "encode_frame"]

HEADER: Final = 4
MAX_FRAME: Final = 2**32 - 1


class FrameError(Exception):
    """A frame header that can never be accepted; ``too_large`` tells which kind."""

    def __init__(self, too_large: bool) -> None:
        super().__init__("frame too large" if too_large else "empty frame")
        self.too_large = too_large


def encode_frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length."""
    if not 0 < len(payload) <= MAX_FRAME:
        raise ValueError("a frame holds 1 to 2**32-1 bytes")
    return len(payload).to_bytes(HEADER, "big") + payload


class FrameReader:
    """Cuts a byte stream into frames.

    Feed it what the socket delivers, then take frames out until ``next_frame`` returns
    None. ``max_frame`` may change between frames (the TCP server raises it once the
    connection has authenticated).

    Raises:
        FrameError: from ``next_frame``, when the next header is 0 or above ``max_frame``.
    """

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    def next_frame(self) -> bytes | None:
        buffer = self._buffer
        if len(buffer) < HEADER:
            return None
        length = int.from_bytes(buffer[:HEADER], "big")
        if length == 0 or length > self.max_frame:
            raise FrameError(too_large=length > 0)
        end = HEADER + length
        if len(buffer) < end:
            return None
        frame = bytes(buffer[HEADER:end])
        del buffer[:end]
        return frame
