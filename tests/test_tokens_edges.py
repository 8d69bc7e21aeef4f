"""Token and keyring edges: a claim ``once`` that is not true, and revocations carried over
when a keyring moves to another store (SR-38: a revocation is never forgotten on a switch)."""

from __future__ import annotations

from tokens_support import NOW, Clock, claims, craft, make_keyring, rejected

from safe_rpc import MemoryStore


def test_claim_once_must_be_true_when_present() -> None:
    keyring = make_keyring()
    assert rejected(keyring, craft(claims(once=False)))
    assert rejected(keyring, craft(claims(once="yes")))
    assert not rejected(keyring, craft(claims()))


def test_use_store_carries_revocations_over() -> None:
    keyring = make_keyring(Clock())
    keyring.revoke_kid("old-key")
    keyring.revoke_jti("t1", expires_at=NOW + 600)
    keyring.revoke_subject("alice", before=NOW - 10)
    target = MemoryStore()
    target.revoke("sub", "alice", NOW - 100)  # an older cut-off: the newer one wins
    keyring.use_store(target)
    held = target.revocations()
    assert held.kids == {"old-key"}
    assert set(held.jtis) == {"t1"}
    assert held.subjects == {"alice": NOW - 10}
    assert keyring.revocation_view.store is target
    assert keyring.revocations().kids == {"old-key"}
