"""HMAC bearer tokens under the ``safe-rpc+jwt`` profile, and the ``Keyring`` that issues
and verifies them.

A token is a JWT in compact form (RFC 7519) restricted to one profile:

* header exactly ``{"alg":"HS256","typ":"safe-rpc+jwt","kid":<key id>}`` (members in any
  order, nothing else: no ``crit``, ``jku``, ``jwk``, ``x5u``...). The algorithm is fixed
  here and never read from the token (RFC 8725 sections 2.1, 3.1; ``typ`` per 3.11);
* claims ``sub``, ``aud``, ``scope`` (space-separated), ``iat``, ``exp``, ``jti`` required,
  ``nbf`` optional; other claims are kept in ``Principal.claims`` but decide nothing.

The verifier is ours, not a general JWT library: strict base64url (no padding, no
whitespace, canonical), a size cap before any decoding, header and payload read with the
strict parser (duplicate claims are an error, not "last wins"), the key chosen by ``kid``
from an in-memory table only, HMAC-SHA256 from the standard library compared with
``hmac.compare_digest``, exact audience, 30 s leeway, a maximum lifetime, ``iat`` not in the
future. Every failure raises the same ``Unauthenticated()``; the reason goes to the
``safe_rpc.auth`` log (never the token).

Key file format (``Keyring.to_file`` / ``from_file``; mode 0600, refused if group- or
world-readable)::

    {"audience": "calc", "active": "k1", "keys": {"k1": "<64 hex digits>"},
     "max_lifetime": 3600}

Environment (``Keyring.from_env``): ``SAFE_RPC_KEY_FILE`` (a key file), or
``SAFE_RPC_AUDIENCE`` + ``SAFE_RPC_KEYS`` (``kid:hex[,kid:hex...]``) + optional
``SAFE_RPC_ACTIVE_KID``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NoReturn

from .._core.context import Principal
from .._core.errors import ConfigError, Unauthenticated
from .._core.json import JSONError
from .._core.limits import KEY_FILE_JSON, TOKEN_JSON
from .._store.base import Revocations, Store
from .._store.memory import MemoryStore
from .._store.revocations import RevocationView

__all__ = ["Keyring"]

auth_log = logging.getLogger("safe_rpc.auth")

ALG: Final = "HS256"
TYP: Final = "safe-rpc+jwt"
MIN_KEY_BYTES: Final = 32  # RFC 7518 section 3.2: a key at least as long as the hash
_KID: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_REQUIRED: Final = {"sub": str, "aud": str, "scope": str, "iat": int, "exp": int, "jti": str}
_MAX_SUBJECT: Final = 128
_MAX_SCOPE_CHARS: Final = 2048
_MAX_SCOPES: Final = 64
#: Verified tokens remembered, so a client reusing its token skips HMAC and parsing.
_CACHE_SIZE: Final = 256


class _Reject(Exception):
    """A verification failure; the text is the reason for the log."""


def _reject(reason: str) -> NoReturn:
    raise _Reject(reason)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(segment: str) -> bytes:
    # RFC 7515 section 2: base64url without padding. Anything else (padding, whitespace,
    # '+' or '/', non-canonical trailing bits) is refused, so one token has one spelling.
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        _reject("bad base64url")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        _reject("bad base64url")
    if _b64encode(raw) != segment:
        _reject("non-canonical base64url")
    return raw


def _check_key(kid: object, key: object) -> bytes:
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise ConfigError(f"key id {kid!r} must be 1-32 characters of A-Z a-z 0-9 _ -")
    if not isinstance(key, bytes | bytearray):
        raise ConfigError(f"key {kid!r} must be bytes (e.g. secrets.token_bytes(32))")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"key {kid!r} is {len(key)} bytes; HMAC-SHA256 keys must be at least "
            f"{MIN_KEY_BYTES} random bytes (use Keyring.generate() or secrets.token_bytes(32))"
        )
    return bytes(key)


class Keyring:
    """HMAC keys that issue and verify tokens for one audience.

    Example:
        ```python
        from safe_rpc import Keyring, RPCServer

        keyring = Keyring.generate(audience="calc")
        rpc = RPCServer(keyring=keyring)
        token = keyring.issue("alice", ["account:write"], ttl=600)
        ```

    Args:
        keys: key id -> secret (each at least 32 bytes). Several keys verify at once
            (rotation); one of them, ``active``, signs new tokens.
        audience: the exact ``aud`` every token must carry.
        active: the key id that issues tokens (may be omitted when there is one key).
        max_lifetime: most seconds between ``iat`` and ``exp`` (default one hour).
        leeway: clock skew tolerated on ``exp``, ``nbf`` and ``iat`` (default 30 s).
        clock: seconds since the epoch; injectable for tests.
        max_token_bytes: longer tokens are refused before any decoding.
        store: where revocations live (default: this process's memory). ``RPCServer(store=...)``
            sets the server's store here; see ``use_store``.

    Raises:
        ConfigError: for a short key, a bad key id, no audience, or an unknown ``active``.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        *,
        audience: str,
        active: str | None = None,
        max_lifetime: int = 3600,
        leeway: int = 30,
        clock: Callable[[], float] = time.time,
        max_token_bytes: int = 4096,
        store: Store | None = None,
    ) -> None:
        if not isinstance(audience, str) or not audience:
            raise ConfigError("a Keyring needs a non-empty audience (the service's name)")
        if not keys:
            raise ConfigError("a Keyring needs at least one key")
        self._keys = {kid: _check_key(kid, key) for kid, key in keys.items()}
        if active is None:
            if len(self._keys) > 1:
                raise ConfigError("several keys given: say which one issues tokens (active=...)")
            active = next(iter(self._keys))
        self.audience = audience
        self.max_lifetime = max_lifetime
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self._clock = clock
        self._active = ""
        self._revocations = RevocationView(store or MemoryStore(clock=clock), clock=clock)
        # Verified tokens by their exact text (successes only; at most _CACHE_SIZE of them).
        self._cache: dict[str, Principal] = {}
        self.set_active(active)

    # -- keys -------------------------------------------------------------------------------

    @classmethod
    def generate(cls, *, audience: str, **options: Any) -> Keyring:
        """A keyring with one fresh random 256-bit key under a random key id."""
        return cls({secrets.token_hex(4): secrets.token_bytes(32)}, audience=audience, **options)

    @property
    def active(self) -> str:
        """The key id that signs new tokens."""
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def add_key(self, kid: str, key: bytes) -> None:
        """Add a verification key (step 1 of a rotation: see SECURITY.md)."""
        if kid in self._keys:
            raise ConfigError(f"key id {kid!r} is already in the keyring")
        self._keys[kid] = _check_key(kid, key)

    def set_active(self, kid: str) -> None:
        """Sign new tokens with ``kid`` (step 2 of a rotation)."""
        if kid not in self._keys:
            raise ConfigError(f"active key id {kid!r} is not in the keyring")
        self._active = kid

    def remove_key(self, kid: str) -> None:
        """Stop accepting tokens signed with ``kid`` (step 3, after max_lifetime + leeway)."""
        if kid == self._active:
            raise ConfigError(f"key {kid!r} is active; make another key active first")
        self._keys.pop(kid, None)

    # -- revocation (through the store: every process that shares it refuses) -------------

    def use_store(self, store: Store, *, staleness: float = 1.0, max_stale: float = 30.0) -> None:
        """Read and write revocations through ``store`` from now on.

        Revocations made on the previous store are carried over (written to the new one
        when they are not there already).

        Raises:
            StoreUnavailable: when carrying them over failed (they stay in force here).
        """
        old = self._revocations.snapshot()
        self._revocations.stop()
        self._revocations = RevocationView(
            store, staleness=staleness, max_stale=max_stale, clock=self._clock
        )
        known = self._revocations.snapshot()
        for kid in old.kids - known.kids:
            self._revocations.revoke("kid", kid, None)
        for jti, until in old.jtis.items():
            if jti not in known.jtis:
                self._revocations.revoke("jti", jti, until)
        for subject, before in old.subjects.items():
            if known.subjects.get(subject, -1.0) < before:
                self._revocations.revoke("sub", subject, before)

    @property
    def revocation_view(self) -> RevocationView:
        """The local revocation cache (the server asks it whether it is too stale)."""
        return self._revocations

    def revocations(self) -> Revocations:
        """The revocations in force in this process (a copy)."""
        return self._revocations.snapshot()

    def revoke_kid(self, kid: str) -> None:
        """Invalidate every token signed with ``kid`` at once (a leaked key).

        Raises:
            StoreUnavailable: the store did not record it (in force in this process only).
        """
        self._revocations.revoke("kid", kid, None)

    def revoke_jti(self, jti: str, *, expires_at: float | None = None) -> None:
        """Invalidate one token by its ``jti``. Pass its ``exp`` so the entry can be forgotten
        once the token would have expired anyway (the denylist stays bounded)."""
        until = expires_at if expires_at is not None else self._clock() + self.max_lifetime
        self._revocations.revoke("jti", jti, until + self.leeway)

    def revoke_subject(self, subject: str, *, before: float | None = None) -> None:
        """Invalidate every token of ``subject`` issued before ``before`` (default: now):
        "sign out everywhere". Tokens issued afterwards are accepted."""
        self._revocations.revoke("sub", subject, self._clock() if before is None else before)

    # -- tokens -----------------------------------------------------------------------------

    def issue(
        self, subject: str, scopes: Iterable[str] = (), *, ttl: int = 900, once: bool = False
    ) -> str:
        """A signed token for ``subject`` holding ``scopes``, valid for ``ttl`` seconds.

        With ``once=True`` the token carries the claim ``"once": true`` and a server accepts
        it for exactly one message across every process sharing its store.

        Raises:
            ConfigError: a subject, scope or ttl that a token cannot carry.
        """
        if not isinstance(subject, str) or not 0 < len(subject) <= _MAX_SUBJECT:
            raise ConfigError(f"subject must be a string of 1-{_MAX_SUBJECT} characters")
        scope_list = sorted(set(scopes))
        for scope in scope_list:
            if not scope or any(c.isspace() for c in scope):
                raise ConfigError(f"scope {scope!r} must be non-empty and contain no spaces")
        if not 0 < ttl <= self.max_lifetime:
            raise ConfigError(f"ttl must be between 1 and max_lifetime ({self.max_lifetime}) s")
        now = int(self._clock())
        claims = {
            "sub": subject,
            "aud": self.audience,
            "scope": " ".join(scope_list),
            "iat": now,
            "exp": now + ttl,
            # 128 random bits in hex: an id never starts with "-", so `safe-rpc revoke --jti ID`
            # cannot mistake it for an option.
            "jti": secrets.token_hex(16),
        }
        if once:
            claims["once"] = True
        header = {"alg": ALG, "typ": TYP, "kid": self._active}
        signing_input = f"{_encode_json(header)}.{_encode_json(claims)}"
        return f"{signing_input}.{_b64encode(self._mac(self._active, signing_input))}"

    def verify(self, token: str) -> Principal:
        """The principal of a valid token.

        Raises:
            Unauthenticated: for every kind of failure, identically.
        """
        cached = self._cache.get(token) if isinstance(token, str) else None
        if cached is not None:
            # The exact same string verified before: its signature and claims cannot have
            # changed; what can (expiry, revocation, key removal) is re-checked here.
            if self.still_valid(cached):
                return cached
            self._cache.pop(token, None)  # (handler threads may race to drop it)
        try:
            principal = self._verify(token)
        except _Reject as reason:
            auth_log.info("token rejected: %s", reason)
            raise Unauthenticated() from None
        if len(self._cache) >= _CACHE_SIZE:
            del self._cache[next(iter(self._cache))]  # oldest first: bounded memory
        self._cache[token] = principal
        return principal

    def still_valid(self, principal: Principal) -> bool:
        """Re-check a principal verified earlier: its key, its jti and its expiry."""
        if principal.key_id not in self._keys:
            return False
        iat = principal.claims.get("iat", 0)
        if self._revocations.revoked(principal.key_id, principal.token_id, principal.subject, iat):
            return False
        expires = principal.expires_at
        return expires is None or self._clock() < expires + self.leeway

    def _mac(self, kid: str, signing_input: str) -> bytes:
        return hmac.new(self._keys[kid], signing_input.encode("ascii"), hashlib.sha256).digest()

    def _verify(self, token: str) -> Principal:
        if not isinstance(token, str) or not token:
            _reject("empty or not a string")
        if len(token) > self.max_token_bytes:
            _reject("token too long")
        parts = token.split(".")
        # Every segment must be base64url *before* any of them is used: the signing input
        # is MACed as ASCII (a non-ASCII payload once escaped as UnicodeEncodeError).
        if len(parts) != 3 or not all(_B64URL.fullmatch(part) for part in parts):
            _reject("not three base64url segments")
        header_b64, payload_b64, signature_b64 = parts
        header = _parse_segment(header_b64)
        if header.keys() != {"alg", "typ", "kid"}:
            _reject("header members are not exactly alg, typ, kid")
        if header["alg"] != ALG or header["typ"] != TYP:
            _reject("wrong alg or typ")
        kid = header["kid"]
        if not isinstance(kid, str) or not _KID.fullmatch(kid) or kid not in self._keys:
            _reject("unknown kid")
        signature = _b64decode(signature_b64)
        expected = self._mac(kid, f"{header_b64}.{payload_b64}")
        if not hmac.compare_digest(signature, expected):  # constant time (SR-33)
            _reject("bad signature")
        claims = _parse_segment(payload_b64)
        return self._principal(claims, kid)

    def _principal(self, claims: dict[str, Any], kid: str) -> Principal:
        for name, kind in _REQUIRED.items():
            value = claims.get(name)
            if type(value) is not kind:
                _reject(f"claim {name} missing or not {kind.__name__}")
        nbf = claims.get("nbf")
        if claims.get("once", True) is not True:
            _reject("claim once is not true")  # only issue(..., once=True) sets it
        if "nbf" in claims and type(nbf) is not int:
            _reject("claim nbf not int")
        if claims["aud"] != self.audience:
            _reject("wrong audience")
        sub, scope = claims["sub"], claims["scope"]
        if not 0 < len(sub) <= _MAX_SUBJECT or len(scope) > _MAX_SCOPE_CHARS:
            _reject("sub or scope too long")
        now, leeway = self._clock(), self.leeway
        iat, exp = claims["iat"], claims["exp"]
        if iat > now + leeway:
            _reject("iat in the future")
        if not iat < exp <= iat + self.max_lifetime:
            _reject("lifetime not within max_lifetime")
        if now >= exp + leeway:
            _reject("expired")
        if nbf is not None and nbf > now + leeway:
            _reject("not yet valid")
        if self._revocations.revoked(kid, claims["jti"], sub, iat):
            _reject("revoked")
        scopes = frozenset(s for s in scope.split(" ") if s)
        if len(scopes) > _MAX_SCOPES:
            _reject("too many scopes")
        return Principal(
            subject=sub,
            scopes=scopes,
            claims=MappingProxyType(claims),
            expires_at=float(exp),
            token_id=claims["jti"],
            key_id=kid,
        )

    # -- files and environment --------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> Keyring:
        """Load a key file (format in the module docstring).

        Raises:
            ConfigError: missing or unreadable file, group/world-readable file, bad content.
        """
        file = Path(path)
        try:
            mode = file.stat().st_mode
            raw = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read key file {file}: {exc.strerror}") from None
        try:
            data = KEY_FILE_JSON.loads(raw)
            keys = {kid: bytes.fromhex(hexkey) for kid, hexkey in data["keys"].items()}
            audience = data["audience"]
            active = data.get("active")
            if "max_lifetime" in data:
                options.setdefault("max_lifetime", int(data["max_lifetime"]))
        except (JSONError, KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(
                f"{file} is not a key file (make one: safe-rpc keygen --out FILE)"
            ) from None
        # Checked after the content: a file that is not a key file (README.md) is named as
        # such instead of getting chmod advice.
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"key file {file} is readable by others; run: chmod 600 {file}")
        return cls(keys, audience=audience, active=active, **options)

    def to_file(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the keyring as a key file with mode 0600."""
        data = {
            "audience": self.audience,
            "active": self._active,
            "keys": {kid: key.hex() for kid, key in self._keys.items()},
            "max_lifetime": self.max_lifetime,
        }
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            raise ConfigError(f"{path} exists; refusing to overwrite a key file") from None
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
        os.chmod(path, 0o600)

    @classmethod
    def from_env(cls, prefix: str = "SAFE_RPC_", **options: Any) -> Keyring:
        """Load from ``{prefix}KEY_FILE``, or ``{prefix}AUDIENCE`` + ``{prefix}KEYS``.

        Raises:
            ConfigError: when the variables are missing or malformed.
        """
        env = os.environ
        if f"{prefix}KEY_FILE" in env:
            return cls.from_file(env[f"{prefix}KEY_FILE"], **options)
        try:
            audience = env[f"{prefix}AUDIENCE"]
            pairs = (item.split(":", 1) for item in env[f"{prefix}KEYS"].split(","))
            keys = {kid.strip(): bytes.fromhex(hexkey.strip()) for kid, hexkey in pairs}
        except (KeyError, ValueError):
            raise ConfigError(
                f"set {prefix}KEY_FILE, or {prefix}AUDIENCE and {prefix}KEYS=kid:hex[,kid:hex]"
            ) from None
        return cls(keys, audience=audience, active=env.get(f"{prefix}ACTIVE_KID"), **options)


def _encode_json(value: dict[str, Any]) -> str:
    return _b64encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _parse_segment(segment: str) -> dict[str, Any]:
    try:
        value = TOKEN_JSON.loads(_b64decode(segment))
    except JSONError as exc:
        _reject(f"segment is not strict JSON ({exc})")
    if type(value) is not dict:
        _reject("segment is not a JSON object")
    return value
