"""Helpers for token tests: a controllable clock and hand-built tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from safe_rpc import Keyring, Unauthenticated

KEY = bytes(range(32))
NOW = 1_800_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_keyring(clock: Clock | None = None, **options: Any) -> Keyring:
    return Keyring({"k1": KEY}, audience="calc", clock=clock or Clock(), **options)


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "alice",
        "aud": "calc",
        "scope": "account:read account:write",
        "iat": int(NOW),
        "exp": int(NOW) + 600,
        "jti": "abcdefghijklmnopqrstuv",
    }
    for name, value in overrides.items():
        if value is ...:
            del base[name]
        else:
            base[name] = value
    return base


def craft(
    payload: dict[str, Any] | bytes | None = None,
    header: dict[str, Any] | bytes | None = None,
    key: bytes = KEY,
) -> str:
    """A token signed with ``key`` over any header and payload (raw bytes allowed)."""
    if header is None:
        header = {"alg": "HS256", "typ": "safe-rpc+jwt", "kid": "k1"}
    if payload is None:
        payload = claims()
    h = b64(header if isinstance(header, bytes) else json.dumps(header).encode())
    p = b64(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    sig = hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(sig)}"


def rejected(keyring: Keyring, token: str) -> bool:
    """True when ``keyring`` refuses ``token`` (with the one error it ever raises)."""
    try:
        keyring.verify(token)
    except Unauthenticated:
        return True
    return False
