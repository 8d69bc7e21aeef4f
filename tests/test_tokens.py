"""The safe-rpc+jwt token profile and the Keyring (issue 3, SR-33 to SR-38)."""

from __future__ import annotations

import builtins
import hmac
import logging
from pathlib import Path
from typing import Any

import pytest
from tokens_support import KEY, NOW, Clock, b64, claims, craft, make_keyring, rejected

from safe_rpc import ConfigError, Keyring, Unauthenticated


def test_issue_and_verify_round_trip() -> None:
    """A token the keyring issues verifies into the right principal."""
    ring = make_keyring()
    principal = ring.verify(ring.issue("alice", ["b", "a"], ttl=60))
    assert principal.subject == "alice"
    assert principal.scopes == {"a", "b"}
    assert principal.expires_at == NOW + 60
    assert principal.key_id == "k1"
    assert principal.claims["aud"] == "calc"
    assert len(principal.token_id or "") >= 22


def test_sr33_signature_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every MAC check goes through hmac.compare_digest."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    ring = make_keyring()
    ring.verify(ring.issue("alice"))
    assert rejected(ring, craft(key=b"x" * 32))
    assert len(calls) == 2


def test_sr33_no_equality_between_digests_in_source() -> None:
    """The verifier's source never compares a signature or digest with == or !=."""
    source = (Path(__file__).parent.parent / "safe_rpc" / "_auth" / "tokens.py").read_text()
    for line in source.splitlines():
        if "signature" in line or "digest" in line or "expected" in line:
            assert " == " not in line
            assert " != " not in line


def test_sr33_every_failure_is_the_same_error(caplog: pytest.LogCaptureFixture) -> None:
    """Bad signature, unknown kid, expired, not yet valid, malformed, wrong audience and
    revoked all raise the identical Unauthenticated, and only the log says why."""
    clock = Clock()
    ring = make_keyring(clock)
    revoked = craft(claims(jti="revokedrevokedrevoked1"))
    ring.revoke_jti("revokedrevokedrevoked1")
    tokens = {
        "bad signature": craft(key=b"y" * 32),
        "unknown kid": craft(header={"alg": "HS256", "typ": "safe-rpc+jwt", "kid": "zz"}),
        "expired": craft(claims(iat=int(NOW) - 700, exp=int(NOW) - 100)),
        "not yet valid": craft(claims(nbf=int(NOW) + 300)),
        "malformed": "abc.def",
        "wrong audience": craft(claims(aud="calc2")),
        "revoked": revoked,
    }
    caplog.set_level(logging.INFO, logger="safe_rpc.auth")
    errors = []
    for token in tokens.values():
        with pytest.raises(Unauthenticated) as info:
            ring.verify(token)
        errors.append((info.value.code, info.value.message, info.value.data, str(info.value)))
    assert len(set(errors)) == 1
    logged = caplog.text
    for token in tokens.values():
        assert token not in logged
    assert "bad signature" in logged
    assert "expired" in logged


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-31, False), (-29, True), (0, True), (600, True)]
)
def test_sr35_expiry_with_30s_leeway(offset: int, accepted: bool) -> None:
    """A token that expired 31 s ago is rejected; 29 s ago is still accepted."""
    ring = make_keyring()
    token = craft(claims(iat=int(NOW) + offset - 600, exp=int(NOW) + offset))
    assert rejected(ring, token) is not accepted


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        ({"iat": int(NOW) + 31, "exp": int(NOW) + 100}, False),  # issued in the future
        ({"iat": int(NOW) + 29, "exp": int(NOW) + 100}, True),
        ({"exp": int(NOW) + 7200}, False),  # lifetime 2 h > 1 h
        ({"exp": int(NOW) + 3600}, True),
        ({"exp": int(NOW)}, False),  # exp not after iat
        ({"nbf": int(NOW) + 31}, False),
        ({"nbf": int(NOW) + 29}, True),
        ({"nbf": "soon"}, False),
        ({"iat": float(NOW)}, False),
        ({"iat": True}, False),
    ],
)
def test_sr35_time_claims(overrides: dict[str, Any], accepted: bool) -> None:
    """iat in the future, over-long lifetimes and early nbf are refused, with leeway."""
    assert rejected(make_keyring(), craft(claims(**overrides))) is not accepted


@pytest.mark.parametrize("missing", ["sub", "aud", "scope", "iat", "exp", "jti"])
def test_sr35_missing_claims_rejected(missing: str) -> None:
    """Every required claim must be present with its type."""
    assert rejected(make_keyring(), craft(claims(**{missing: ...})))


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "typ": "safe-rpc+jwt", "kid": "k1"},
        {"alg": "None", "typ": "safe-rpc+jwt", "kid": "k1"},
        {"alg": "HS512", "typ": "safe-rpc+jwt", "kid": "k1"},
        {"alg": "RS256", "typ": "safe-rpc+jwt", "kid": "k1"},
        {"alg": "HS256", "typ": "JWT", "kid": "k1"},
        {"alg": "HS256", "typ": "safe-rpc+jwt"},
        {"alg": "HS256", "typ": "safe-rpc+jwt", "kid": "k1", "crit": ["exp"]},
        {"alg": "HS256", "typ": "safe-rpc+jwt", "kid": "k1", "jku": "https://evil/"},
        {"alg": "HS256", "typ": "safe-rpc+jwt", "kid": "k1", "jwk": {"kty": "oct"}},
        {"alg": "HS256", "typ": "safe-rpc+jwt", "kid": "k1", "x5u": "https://evil/"},
    ],
    ids=lambda h: "-".join(f"{k}={v}" for k, v in h.items() if k != "kid")[:40],
)
def test_sr34_header_must_be_exactly_the_profile(header: dict[str, Any]) -> None:
    """alg none/None/HS512/RS256, typ JWT and extra header members are all rejected."""
    assert rejected(make_keyring(), craft(header=header))


def test_sr34_alg_none_without_signature_rejected() -> None:
    """The classic unsigned token (empty third segment) is rejected."""
    h = b64(b'{"alg":"none","typ":"safe-rpc+jwt","kid":"k1"}')
    p = b64(b'{"sub":"admin"}')
    assert rejected(make_keyring(), f"{h}.{p}.")


@pytest.mark.parametrize("kid", ["../../../dev/null", "' OR 1=1 --", "k" * 10_240, "ké", ""])
def test_sr36_kid_injection(kid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile kid is rejected without touching the filesystem."""

    def no_open(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the verifier opened a file")

    monkeypatch.setattr(builtins, "open", no_open)
    monkeypatch.setattr(Path, "open", no_open)
    ring = make_keyring(max_token_bytes=20_000)
    assert rejected(ring, craft(header={"alg": "HS256", "typ": "safe-rpc+jwt", "kid": kid}))


def test_sr37_short_keys_refused() -> None:
    """A 31-byte key is a ConfigError with a message saying what to do; 32 bytes is fine."""
    with pytest.raises(ConfigError, match="at least 32"):
        Keyring({"k1": b"x" * 31}, audience="calc")
    Keyring({"k1": KEY}, audience="calc")


@pytest.mark.parametrize(
    ("keys", "options", "message"),
    [
        ({"bad kid!": KEY}, {}, "key id"),
        ({"k1": "text"}, {}, "must be bytes"),
        ({}, {}, "at least one key"),
        ({"k1": KEY, "k2": KEY}, {}, "active"),
        ({"k1": KEY}, {"active": "k9"}, "not in the keyring"),
        ({"k1": KEY}, {"audience": ""}, "audience"),
    ],
)
def test_keyring_construction_errors(keys: Any, options: Any, message: str) -> None:
    """Misconfigured keyrings fail at construction with a clear message."""
    options = {"audience": "calc", **options}
    with pytest.raises(ConfigError, match=message):
        Keyring(keys, **options)


def test_sr38_revoked_jti_and_kid() -> None:
    """Revoking a jti kills one token; revoking a kid kills all its tokens."""
    clock = Clock()
    ring = make_keyring(clock)
    first, second = ring.issue("a"), ring.issue("b")
    principal = ring.verify(first)
    ring.revoke_jti(principal.token_id or "", expires_at=principal.expires_at)
    assert rejected(ring, first)
    assert not ring.still_valid(principal)
    assert not rejected(ring, second)
    ring.revoke_kid("k1")
    assert rejected(ring, second)
    # The jti denylist forgets entries once their token would have expired anyway.
    clock.now += 4000
    ring.revoke_jti("other")
    assert principal.token_id not in ring.revocations().jtis


def test_still_valid_follows_expiry_and_key_removal() -> None:
    """A principal verified earlier stops being valid at exp + leeway or without its key."""
    clock = Clock()
    ring = make_keyring(clock)
    principal = ring.verify(ring.issue("alice", ttl=60))
    assert ring.still_valid(principal)
    clock.now += 60 + 29
    assert ring.still_valid(principal)
    clock.now += 2
    assert not ring.still_valid(principal)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "x" * 10_240,
        " " + "a.b.c",
        "eyJ=.eyJ.abc",
        "e y.e.c",
        "e+/.e.c",
        "e.e.c\n",
    ],
)
def test_malformed_tokens(token: str) -> None:
    """Empty, oversized, padded, whitespace and non-base64url tokens are rejected."""
    assert rejected(make_keyring(), token)


def test_padding_and_whitespace_variants_of_a_valid_token_rejected() -> None:
    """One token has one spelling: padded or spaced copies of a valid token fail."""
    ring = make_keyring()
    token = ring.issue("alice")
    assert not rejected(ring, token)
    h, p, s = token.split(".")
    for variant in (f"{h}=.{p}.{s}", f"{h}.{p}.{s}==", f"{h}. {p}.{s}", f"{h}.{p}.{s} "):
        assert rejected(ring, variant)


def test_tampered_payload_rejected() -> None:
    """Changing any claim breaks the signature."""
    ring = make_keyring()
    h, _, s = ring.issue("alice", ["read"]).split(".")
    evil = b64(b'{"sub":"alice","aud":"calc","scope":"admin","iat":1,"exp":2,"jti":"x"}')
    assert rejected(ring, f"{h}.{evil}.{s}")


def test_sr06_duplicate_scope_claim_rejected() -> None:
    """A payload with two scope members is not read as "last wins"; it is refused."""
    payload = (
        b'{"sub":"alice","aud":"calc","scope":"read","scope":"admin",'
        b'"iat":1800000000,"exp":1800000600,"jti":"abcdefghijklmnopqrstuv"}'
    )
    assert rejected(make_keyring(), craft(payload))


@pytest.mark.parametrize(
    "payload", [b"[]", b'"x"', b"not json", b'{"a":NaN}', b"\xff\xfe"], ids=repr
)
def test_payload_must_be_a_strict_json_object(payload: bytes) -> None:
    """A payload that is not a strict JSON object is rejected after the signature check."""
    assert rejected(make_keyring(), craft(payload))


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": ["calc"]},
        {"aud": "calcx"},
        {"sub": ""},
        {"sub": "x" * 129},
        {"scope": " ".join(f"s{i}" for i in range(70))},
    ],
)
def test_sr39_audience_exact_and_claim_bounds(overrides: dict[str, Any]) -> None:
    """aud must equal the audience exactly (no lists); sub and scope are bounded."""
    assert rejected(make_keyring(), craft(claims(**overrides)))


def test_issue_argument_checks() -> None:
    """issue() refuses empty subjects, spaced scopes and lifetimes beyond the maximum."""
    ring = make_keyring()
    bad: list[tuple[str, list[str], int]] = [
        ("", [], 60),
        ("a", ["two words"], 60),
        ("a", [], 0),
        ("a", [], 3601),
    ]
    for subject, scopes, ttl in bad:
        with pytest.raises(ValueError, match="must"):
            ring.issue(subject, scopes, ttl=ttl)


def test_key_rotation_procedure() -> None:
    """SECURITY.md's rotation: add new key, make it active, retire the old key later."""
    clock = Clock()
    ring = make_keyring(clock)
    old_token = ring.issue("alice")
    ring.add_key("k2", b"\x02" * 32)
    ring.set_active("k2")
    new_token = ring.issue("alice")
    assert ring.verify(new_token).key_id == "k2"
    assert ring.verify(old_token).key_id == "k1"  # still valid during the overlap
    with pytest.raises(ConfigError, match="active"):
        ring.remove_key("k2")
    with pytest.raises(ConfigError, match="already"):
        ring.add_key("k2", b"\x03" * 32)
    clock.now += ring.max_lifetime + ring.leeway
    ring.remove_key("k1")
    assert rejected(ring, old_token)
    assert ring.key_ids == ("k2",)


def test_key_file_round_trip(tmp_path: Path) -> None:
    """to_file writes mode 0600; from_file reads it back; others' files are refused."""
    ring = Keyring.generate(audience="calc")
    path = tmp_path / "keys.json"
    ring.to_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = Keyring.from_file(path)
    assert loaded.verify(ring.issue("alice")).subject == "alice"
    with pytest.raises(ConfigError, match="refusing"):
        ring.to_file(path)
    ring.to_file(path, overwrite=True)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Keyring.from_file(path)


@pytest.mark.parametrize(
    "content", [b"{", b"[]", b'{"audience":"a","keys":{"k":"zz"}}', b'{"keys":{}}']
)
def test_bad_key_files(tmp_path: Path, content: bytes) -> None:
    """A malformed key file is one clear ConfigError."""
    path = tmp_path / "keys.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="key file"):
        Keyring.from_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        Keyring.from_file(tmp_path / "missing.json")


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SAFE_RPC_KEY_FILE or SAFE_RPC_AUDIENCE + SAFE_RPC_KEYS configure a keyring."""
    monkeypatch.setenv("SAFE_RPC_AUDIENCE", "calc")
    monkeypatch.setenv("SAFE_RPC_KEYS", f"k1:{KEY.hex()}, k2:{(b'2' * 32).hex()}")
    monkeypatch.setenv("SAFE_RPC_ACTIVE_KID", "k2")
    ring = Keyring.from_env()
    assert ring.active == "k2"
    assert ring.verify(ring.issue("alice")).key_id == "k2"
    path = tmp_path / "k.json"
    ring.to_file(path)
    monkeypatch.setenv("SAFE_RPC_KEY_FILE", str(path))
    assert Keyring.from_env().active == "k2"
    monkeypatch.delenv("SAFE_RPC_KEY_FILE")
    monkeypatch.setenv("SAFE_RPC_KEYS", "nonsense")
    with pytest.raises(ConfigError, match="SAFE_RPC_KEYS"):
        Keyring.from_env()


def test_verified_token_cache_honours_expiry_and_revocation() -> None:
    """A cached token still expires, and revoking its jti or kid takes effect at once."""
    clock = Clock()
    ring = make_keyring(clock)
    token = ring.issue("alice", ttl=60)
    first = ring.verify(token)
    assert ring.verify(token) is first  # served from the cache
    clock.now += 60 + 31
    assert rejected(ring, token)
    clock.now = NOW
    token = ring.issue("bob", ttl=60)
    ring.verify(token)
    ring.revoke_jti(ring.verify(token).token_id or "")
    assert rejected(ring, token)
    other = ring.issue("carol")
    ring.verify(other)
    ring.revoke_kid("k1")
    assert rejected(ring, other)


def test_verified_token_cache_is_bounded() -> None:
    """The cache keeps at most 256 tokens."""
    ring = make_keyring()
    for i in range(300):
        ring.verify(ring.issue(f"user{i}"))
    assert len(ring._cache) == 256
