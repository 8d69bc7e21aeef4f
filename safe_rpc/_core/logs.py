"""Logging helpers shared by every layer."""

from __future__ import annotations

__all__ = ["log_safe"]


def log_safe(value: object, limit: int = 128) -> str:
    """A peer-supplied value made safe for one log line (SR-43).

    Truncated to ``limit`` characters, then ``ascii()``-escaped: CR, LF, ESC and every
    other control or non-ASCII character become visible escapes, so a method name cannot
    forge log lines or drive a terminal.
    """
    text = value if isinstance(value, str) else repr(value)
    suffix = "..." if len(text) > limit else ""
    return ascii(text[:limit]) + suffix
