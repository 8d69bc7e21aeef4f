"""Differential test with PyJWT (a test dependency only): the profile interoperates.

Tokens safe_rpc issues verify in PyJWT with the profile pinned, and tokens PyJWT mints
under the profile verify in safe_rpc; tokens PyJWT mints outside the profile do not.
"""

from __future__ import annotations

import time

import jwt
import pytest
from tokens_support import KEY

from safe_rpc import Keyring, Unauthenticated

PINNED = {
    "algorithms": ["HS256"],
    "audience": "calc",
    "options": {"require": ["sub", "aud", "scope", "iat", "exp", "jti"], "strict_aud": True},
    "leeway": 30,
}


def _ring() -> Keyring:
    return Keyring({"k1": KEY}, audience="calc")


def test_our_tokens_verify_in_pyjwt() -> None:
    """A safe_rpc token passes PyJWT's pinned HS256 verification with the same claims."""
    token = _ring().issue("alice", ["account:read", "account:write"], ttl=300)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "safe-rpc+jwt", "kid": "k1"}
    decoded = jwt.decode(token, KEY, **PINNED)  # type: ignore[arg-type]
    assert decoded["sub"] == "alice"
    assert decoded["scope"] == "account:read account:write"


def _pyjwt_token(**extra_headers: object) -> str:
    now = int(time.time())
    payload = {
        "sub": "bob",
        "aud": "calc",
        "scope": "x:read",
        "iat": now,
        "exp": now + 300,
        "jti": "pyjwt-minted-token-0001",
    }
    headers = {"typ": "safe-rpc+jwt", "kid": "k1", **extra_headers}
    return jwt.encode(payload, KEY, algorithm="HS256", headers=headers)


def test_pyjwt_tokens_under_the_profile_verify_here() -> None:
    """PyJWT-minted tokens with the profile's header verify in safe_rpc."""
    principal = _ring().verify(_pyjwt_token())
    assert principal.subject == "bob"
    assert principal.scopes == {"x:read"}


@pytest.mark.parametrize("extra", [{"cty": "x"}, {"typ": "JWT"}, {"crit": ["exp"]}])
def test_pyjwt_tokens_outside_the_profile_rejected(extra: dict[str, object]) -> None:
    """PyJWT tokens with another typ or extra header members are refused."""
    with pytest.raises(Unauthenticated):
        _ring().verify(_pyjwt_token(**extra))


def test_pyjwt_hs512_token_rejected() -> None:
    """An HS512 token with the right key is still refused: the algorithm is fixed."""
    now = int(time.time())
    payload = {"sub": "b", "aud": "calc", "scope": "", "iat": now, "exp": now + 60, "jti": "j"}
    token = jwt.encode(
        payload, KEY * 2, algorithm="HS512", headers={"typ": "safe-rpc+jwt", "kid": "k1"}
    )
    with pytest.raises(Unauthenticated):
        _ring().verify(token)
