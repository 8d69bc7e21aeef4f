"""Authorisation in the dispatcher (issue 3, SR-39)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import check_response, request
from tokens_support import Clock, craft, make_keyring

from safe_rpc import Context, Keyring, Principal, RPCServer


def make_server(reveal_forbidden: bool = False, clock: Clock | None = None) -> RPCServer:
    rpc = RPCServer(keyring=make_keyring(clock), reveal_forbidden=reveal_forbidden)

    @rpc.method(public=True)
    def ping() -> str:
        return "pong"

    @rpc.method(name="account.write", scopes=["account:write"])
    def write(ctx: Context) -> str:
        assert ctx.principal is not None
        return ctx.principal.subject

    @rpc.method(name="account.admin", scopes=["account:write", "account:admin"])
    def admin() -> bool:
        return True

    return rpc


def keyring_of(rpc: RPCServer) -> Keyring:
    assert isinstance(rpc.keyring, Keyring)
    return rpc.keyring


def code(raw: bytes | None) -> Any:
    answer = check_response(raw)
    return answer["error"]["code"] if "error" in answer else answer["result"]


@pytest.mark.parametrize(
    "scope", ["account:writer", "account", "account:write:x", "ACCOUNT:WRITE", "account:*"]
)
def test_sr39_scopes_match_exactly(scope: str) -> None:
    """Scope account:write is granted only by exactly that string."""
    rpc = make_server()
    token = keyring_of(rpc).issue("alice", [scope])
    assert code(rpc.dispatch(request("account.write"), token=token)) == -32601
    token = keyring_of(rpc).issue("alice", ["account:write"])
    assert code(rpc.dispatch(request("account.write"), token=token)) == "alice"


def test_sr39_every_declared_scope_required() -> None:
    """A method declaring two scopes needs both."""
    rpc = make_server()
    one = keyring_of(rpc).issue("a", ["account:write"])
    both = keyring_of(rpc).issue("a", ["account:write", "account:admin"])
    assert code(rpc.dispatch(request("account.admin"), token=one)) == -32601
    assert code(rpc.dispatch(request("account.admin"), token=both)) is True


@pytest.mark.parametrize("method", ["account.write", "account.nonexistent", "rpc.nonexistent"])
def test_anonymous_gets_unauthenticated_for_every_non_public_name(method: str) -> None:
    """Without a token, protected and missing methods look the same: -32001."""
    rpc = make_server()
    assert code(rpc.dispatch(request(method))) == -32001
    assert code(rpc.dispatch(request("ping"))) == "pong"


def test_reveal_forbidden_answers_32003() -> None:
    """With reveal_forbidden=True a missing scope is -32003; unknown names stay -32601."""
    rpc = make_server(reveal_forbidden=True)
    token = keyring_of(rpc).issue("a", ["other"])
    assert code(rpc.dispatch(request("account.write"), token=token)) == -32003
    assert code(rpc.dispatch(request("account.nope"), token=token)) == -32601


def test_invalid_token_fails_every_call_including_public() -> None:
    """A bad credential is never downgraded to anonymous."""
    rpc = make_server()
    for method in ("ping", "account.write", "nope"):
        assert code(rpc.dispatch(request(method), token="garbage")) == -32001
    assert code(rpc.dispatch(request("ping"))) == "pong"


def test_sr39_batch_decided_per_element() -> None:
    """A batch mixing public, permitted and forbidden methods gets per-element answers."""
    rpc = make_server()
    token = keyring_of(rpc).issue("alice", ["account:write"])
    batch = [
        {"jsonrpc": "2.0", "method": "ping", "id": 1},
        {"jsonrpc": "2.0", "method": "account.write", "id": 2},
        {"jsonrpc": "2.0", "method": "account.admin", "id": 3},
        {"jsonrpc": "2.0", "method": "account.admin"},
    ]
    answer = check_response(rpc.dispatch(json.dumps(batch).encode(), token=token))
    assert [a.get("result", a.get("error", {}).get("code")) for a in answer] == [
        "pong",
        "alice",
        -32601,
    ]


def test_identical_error_bytes_for_every_token_failure() -> None:
    """Bad signature, unknown kid, expired, malformed, wrong audience, revoked: same bytes."""
    rpc = make_server()
    ring = keyring_of(rpc)
    revoked = ring.issue("a")
    ring.revoke_jti(ring.verify(revoked).token_id or "")
    bad_tokens = [
        craft(key=b"z" * 32),
        craft(header={"alg": "HS256", "typ": "safe-rpc+jwt", "kid": "nope"}),
        craft({"sub": "a", "aud": "calc", "scope": "", "iat": 1, "exp": 2, "jti": "j"}),
        "x.y",
        ring.issue("a").replace(".", "..", 1),
        revoked,
    ]
    answers = {rpc.dispatch(request("account.write"), token=t) for t in bad_tokens}
    assert len(answers) == 1


def test_principal_expiry_rechecked_for_transport_sessions() -> None:
    """A principal handed in by a transport is re-checked: expired means -32001."""
    clock = Clock()
    rpc = make_server(clock=clock)
    ring = keyring_of(rpc)
    principal = ring.verify(ring.issue("alice", ["account:write"], ttl=60))
    assert code(rpc.dispatch(request("account.write"), principal=principal)) == "alice"
    clock.now += 120
    assert code(rpc.dispatch(request("account.write"), principal=principal)) == -32001


def test_principal_without_keyring_is_refused() -> None:
    """A server without a keyring cannot accept any principal or token."""
    rpc = RPCServer()

    @rpc.method(public=True)
    def ping() -> str:
        return "pong"

    fake = Principal(subject="x", scopes=frozenset())
    assert code(rpc.dispatch(request("ping"), principal=fake)) == -32001
    assert code(rpc.dispatch(request("ping"), token="t")) == -32001
    assert code(rpc.dispatch(request("ping"))) == "pong"
