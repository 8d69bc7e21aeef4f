"""The interface the pipeline needs from whatever verifies credentials.

``safe_rpc.Keyring`` implements it; the core depends only on this protocol, so the token
profile (``safe_rpc._auth``) sits above the core and can be replaced.
"""

from __future__ import annotations

from typing import Protocol

from .context import Principal

__all__ = ["Authenticator"]


class Authenticator(Protocol):
    """What the dispatcher needs from a keyring (``safe_rpc.Keyring`` implements it)."""

    def verify(self, token: str) -> Principal:
        """Return the principal of a valid token; raise ``Unauthenticated`` otherwise."""
        ...

    def still_valid(self, principal: Principal) -> bool:
        """Re-check a principal verified earlier (expiry, revocation)."""
        ...
