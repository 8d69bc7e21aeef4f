"""``safe-rpc audit`` against real servers on loopback (README: Audit any JSON-RPC server).

Against safe_rpc (HTTP, TCP, TLS with a token) every check passes. Against the peers'
libraries (tests/apps/peers.py) and the broken server (tests/apps/broken_server.py, each
defect switched on in turn) the audit reports exactly the failures pinned below; the
README's table summarises them. Limits are small and the probe bounds short so the whole
module runs in seconds; none of the verdicts depends on timing beyond those bounds.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
from audit_support import audit, calculator, not_passed, running_asgi
from broken_server import DEFECTS, BrokenServer
from peers import fastapi_jsonrpc_app, json_rpc_app, jsonrpcserver_app
from servers import connect, http_request, read_response
from tcp_support import running_tcp
from tokens_support import make_keyring

from safe_rpc import Limits
from safe_rpc._audit.checks import SUITES
from safe_rpc._transports.engine import config_options
from safe_rpc._transports.http import ASGIApp

#: What a plain uvicorn deployment gets (no head/body deadline, idle connections kept,
#: h11's head cap only for heads that arrive in pieces): SR-17 to SR-20.
UVICORN = {
    "l.oversized-header": "warn",
    "l.slow-headers": "warn",
    "l.slow-body": "warn",
    "l.idle-connection": "warn",
}
NO_LIMITS = {**UVICORN, "l.batch-size": "warn", "l.oversized-body": "warn"}
STRICT_JSON_PY = {  # Python's json module, as the peers use it
    "s.duplicate-key": "warn",
    "s.nan": "fail",
    "s.infinity": "fail",
    "s.float-overflow": "warn",
    "s.huge-int": "warn",
    "s.lone-surrogate": "warn",
}
BATCH_ANSWERS = {  # JSON-RPC 2.0 §6: [1] and [1,2,3] get an array of errors
    "c.spec.invalid-batch-not-empty": "fail",
    "c.spec.invalid-batch": "fail",
    "c.spec.mixed-batch": "fail",
}

#: json-rpc parses with the json module and turns only ValueError into -32700. 5,000 nested
#: objects exceed the C scanner's recursion guard up to Python 3.12 (about 1,000 deep on
#: 3.11, 1,500 on 3.12): RecursionError escapes as HTTP 500, a fail. CPython 3.13 raised the
#: C recursion limit to 10,000, so the scanner reaches the truncated end and json-rpc
#: answers a proper -32700: the server itself behaves correctly there, and the audit says so.
#: (The 1,000,000-deep '[' input still overflows on 3.13: h.nested-arrays-1m stays a fail.)
NESTED_OBJECTS_5K = {} if sys.version_info >= (3, 13) else {"h.nested-objects-5k": "fail"}

#: Peer -> check id -> verdict, for every check that does not pass.
PINNED: dict[str, dict[str, str]] = {
    "json-rpc 1.15.0": {
        **BATCH_ANSWERS,
        "c.env.id-1-0": "warn",
        "c.env.bool-id": "fail",
        "c.env.params-null": "warn",
        "c.env.version-2-1": "fail",
        "c.env.version-number": "fail",
        **STRICT_JSON_PY,
        "s.invalid-utf8": "fail",  # UnicodeDecodeError escapes: HTTP 500
        "s.overlong-utf8": "fail",
        "s.utf8-surrogate": "fail",
        "s.deep-nesting": "fail",
        "h.invalid-params-text": "fail",
        "h.nested-arrays-1m": "fail",
        **NESTED_OBJECTS_5K,
        **NO_LIMITS,
    },
    "jsonrpcserver 5.0.9": {
        **BATCH_ANSWERS,
        "c.env.fraction-id": "warn",
        **STRICT_JSON_PY,
        "h.method-echo": "warn",
        "h.parse-error-text": "fail",
        **NO_LIMITS,
    },
    "fastapi-jsonrpc 4.1.0": {
        "c.spec.notification-of-an-unknown-method": "fail",
        "c.env.notification": "fail",
        "c.env.params-array": "fail",
        "c.env.fraction-id": "warn",
        "c.env.bool-id": "fail",
        "c.env.array-id": "fail",
        "c.env.object-id": "fail",
        "c.env.no-version": "fail",
        **STRICT_JSON_PY,
        "s.bom": "warn",
        "s.utf8-surrogate": "fail",
        "s.deep-nesting": "warn",
        "h.invalid-request-text": "warn",
        **NO_LIMITS,
    },
}

_PEERS: dict[str, tuple[Any, Any]] = {
    "json-rpc 1.15.0": (json_rpc_app, [2, 3]),
    "jsonrpcserver 5.0.9": (jsonrpcserver_app, [2, 3]),
    "fastapi-jsonrpc 4.1.0": (fastapi_jsonrpc_app, {"a": 2, "b": 3}),  # by name only
}
#: Checks too slow for the test suite against some peers (measured by hand with
#: ``safe-rpc audit``): one 1 MiB batch of numbers keeps jsonrpcserver and fastapi-jsonrpc
#: busy for over 40 s; a 60,000-member object costs fastapi-jsonrpc about 7 s.
_SKIP: dict[str, tuple[str, ...]] = {
    "jsonrpcserver 5.0.9": ("h.batch-of-numbers-1mib",),
    "fastapi-jsonrpc 4.1.0": ("h.batch-of-numbers-1mib", "h.object-60k-keys"),
}


@pytest.mark.parametrize("peer", sorted(PINNED))
def test_peer_verdicts_are_pinned(peer: str) -> None:
    """Each peer, behind a minimal ASGI app on uvicorn, fails exactly the pinned checks."""
    factory, params = _PEERS[peer]
    skip = _SKIP.get(peer, ())
    with running_asgi(factory()) as (port, _):
        result = audit(
            f"http://127.0.0.1:{port}/",
            method="add",
            params=params,
            expect=5,
            probe_invalid_params=True,
            skip=skip,
        )
    assert not_passed(result) == PINNED[peer]
    skipped = {o.check.id for o in result.outcomes if o.verdict == "skip"}
    assert skipped == set(skip)


#: Defect -> the checks it turns from pass to this verdict (see tests/apps/broken_server.py).
DEFECT_VERDICTS: dict[str, dict[str, str]] = {
    "answers-notifications": {
        "c.spec.notification": "fail",
        "c.spec.notification-of-an-unknown-method": "fail",
        "c.spec.mixed-batch": "fail",
        "c.spec.batch-of-notifications": "fail",
        "c.env.notification": "fail",
    },
    "duplicate-keys": {"s.duplicate-key": "warn"},
    "empty-batch-array": {"c.spec.empty-array": "fail", "c.env.empty-batch": "fail"},
    "leak-exception": {"h.parse-error-text": "fail", "h.invalid-params-text": "fail"},
    "lenient-json": {
        "s.nan": "fail",
        "s.infinity": "fail",
        "s.float-overflow": "warn",
        "s.huge-int": "warn",
    },
    # (Also h.batch-of-numbers-1mib: 524,287 answers take seconds to build, too slow and too
    # load-dependent to pin here; it is a warn, "answer over 8 MiB", when the machine is idle.)
    "no-batch-limit": {"l.batch-size": "warn"},
    "no-body-limit": {"l.oversized-body": "warn"},
    "wrong-id": {
        "c.spec.positional-parameters": "fail",
        "c.spec.positional-parameters-swapped": "fail",
        "c.spec.named-parameters": "fail",
        "c.spec.named-parameters-reordered": "fail",
        "c.env.number-id": "fail",
        "c.env.id-1-0": "warn",
        "c.env.params-array": "fail",
        "c.env.params-object": "fail",
        "c.env.empty-method": "warn",
    },
}
#: The broken server with no defect: Python's json accepts lone surrogates; uvicorn.
BROKEN_BASELINE = {"s.lone-surrogate": "warn", **UVICORN}


def test_broken_server_each_defect_caught_by_its_checks() -> None:
    """With no defect the broken server fails nothing; each defect switched on alone adds
    exactly its pinned verdicts (and only those) in the suites it touches."""
    broken = BrokenServer(set())
    with running_asgi(broken.app()) as (port, _):
        url = f"http://127.0.0.1:{port}/"
        options: dict[str, Any] = {"method": "add", "params": [2, 3], "expect": 5}
        options["probe_invalid_params"] = True
        assert not_passed(audit(url, **options)) == BROKEN_BASELINE
        quick = ("l.slow", "l.idle", "l.oversized-header")  # covered by the baseline run
        for defect, expected in sorted(DEFECT_VERDICTS.items()):
            broken.defects = {defect}
            suites = [s for s in SUITES if any(_SUITE[i[0]] == s for i in expected)]
            baseline = {
                i: v
                for i, v in BROKEN_BASELINE.items()
                if _SUITE[i[0]] in suites and not i.startswith(quick)
            }
            skip = quick + tuple(i for i in HEAVY if i not in expected)
            got = not_passed(audit(url, suites, skip=skip, **options))
            assert got == {**baseline, **expected}, defect
    assert set(DEFECT_VERDICTS) == DEFECTS - {"crash-on-malformed"}


_SUITE = {"c": "conformance", "s": "strict-json", "h": "hostile", "l": "limits"}
#: The 1 MiB-class inputs: run on the baseline, and on a defect only when it changes them.
HEAVY = (
    "h.nested-arrays-1m",
    "h.batch-of-numbers-1mib",
    "h.hash-collision-ints",
    "h.string-1mib",
    "h.object-60k-keys",
    "h.nested-objects-5k",
    "h.unterminated-escapes",
)


def test_broken_server_crash_on_malformed_message() -> None:
    """A server that dies on one malformed message: that check fails, saying so, and every
    later check is skipped instead of piling up failures (goreleaser/mcp#54)."""
    broken = BrokenServer({"crash-on-malformed"})
    with running_asgi(broken.app()) as (port, server):

        def crash() -> None:  # stop listening at once, as a dead process would
            for listener in server.servers:
                listener.close()
            server.should_exit = True

        broken.crash = crash
        result = audit(f"http://127.0.0.1:{port}/", ["conformance", "strict-json"])
    by_id = {o.check.id: o for o in result.outcomes}
    crashed = by_id["c.spec.invalid-json"]
    assert crashed.verdict == "fail"
    assert "stopped answering" in crashed.evidence
    later = result.outcomes[result.outcomes.index(crashed) + 1 :]
    assert later
    assert all(o.verdict == "skip" for o in later)
    assert "after c.spec.invalid-json" in later[-1].evidence


# -- safe_rpc: everything passes -------------------------------------------------------------

#: Deadlines short enough for the connection probes to see them within 1.5 s.
FAST_LIMITS = Limits(
    header_timeout=0.5,
    body_timeout=0.5,
    keepalive_timeout=1.0,
    tcp_idle_timeout=0.5,
    tcp_frame_timeout=0.5,
    tcp_auth_timeout=0.5,
)


def _all_pass(url: str, **options: Any) -> None:
    result = audit(url, method="add", params=[2, 3], expect=5, probe_invalid_params=True, **options)
    assert not_passed(result) == {}
    skipped = {o.check.id: o.evidence for o in result.outcomes if o.verdict == "skip"}
    assert all("does not apply" in why for why in skipped.values()), skipped
    assert result.exit_status == 0


def test_safe_rpc_http_passes_every_check() -> None:
    rpc = calculator(FAST_LIMITS)
    with running_asgi(ASGIApp(rpc), **config_options(rpc.limits)) as (port, _):
        _all_pass(f"http://127.0.0.1:{port}/")


def test_safe_rpc_tcp_passes_every_check() -> None:
    with running_tcp(calculator(FAST_LIMITS)) as (_, port):
        _all_pass(f"tcp://127.0.0.1:{port}")


def test_safe_rpc_tls_with_token_passes_every_check(tmp_path: Path) -> None:
    """Over TLS, authenticating with rpc.authenticate first (SR-30)."""
    keyring = make_keyring()
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    token = keyring.issue("alice", [], ttl=600)
    with running_tcp(calculator(FAST_LIMITS, keyring=keyring), tls=context) as (_, port):
        _all_pass(f"tls://127.0.0.1:{port}", token=token, cafile=str(tmp_path / "ca.pem"))


def test_sr20_request_head_arriving_whole_refused() -> None:
    """Found by the audit (l.oversized-header): h11 caps a head only while it is incomplete,
    so a 64 KiB head sent in one write was served. The engine now counts it too."""
    rpc = calculator(FAST_LIMITS)
    body = b'{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}'
    with running_asgi(ASGIApp(rpc), **config_options(rpc.limits)) as (port, _):
        for filler, status in ((15 * 1024, 200), (17 * 1024, 431), (64 * 1024, 431)):
            head = http_request(body, headers={"X-Filler": "a" * filler})
            with connect(port) as sock:
                sock.sendall(head)
                assert read_response(sock)[0] == status, filler
        with connect(port) as sock:  # and it still serves
            sock.sendall(http_request(body))
            assert read_response(sock)[2] == b'{"jsonrpc":"2.0","result":5,"id":1}'
