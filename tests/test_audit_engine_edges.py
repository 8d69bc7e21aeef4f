"""The audit engine and probes on answers real peers rarely give, in process: a scripted
transport plays the server (its answers are ``Reply`` objects, as the socket transports
build them) and socket pairs stand in for the raw connections of the connection probes.

Covered: a target that does not speak JSON-RPC (exit 2), a server that goes away during a
check or takes time to come back (SR-45), answers over the read cap (SR-15), leaking or
wrong error answers (SR-42), batches answered with garbage (SR-14), a server that stops
answering after the connection probes, and connections cut at once (SR-17 to SR-19)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from safe_rpc._audit.budget import Budget
from safe_rpc._audit.checks import Context, Options, strict_json_checks
from safe_rpc._audit.engine import AuditResult, run_audit
from safe_rpc._audit.judge import ANY, Answer, Verdict, interpret, leaks, match, show
from safe_rpc._audit.transports import AuditConnectionError, Reply, Transport, parse_target

PROBE = "safe_rpc_audit_nonexistent_test"
HOSTILE_IDS = ("h.nested", "h.batch-of", "h.hash", "h.string", "h.object", "h.unterminated")


def error(code: int, id: object = None, message: str = "Method not found") -> Reply:
    body = {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}
    return Reply(json.dumps(body).encode(), status=200)


class Scripted(Transport):
    """A target whose answers come from ``answer``; raw connections are socket pairs whose
    far end ``peer`` handles (closing it is the server cutting the connection)."""

    def __init__(
        self,
        url: str,
        answer: Callable[[bytes], Reply],
        peer: Callable[[socket.socket], None] = socket.socket.close,
    ) -> None:
        super().__init__(parse_target(url), Budget(10_000, 1e6), token=None, timeout=0.5)
        self.answer = answer
        self.peer = peer
        self.kept: list[socket.socket] = []
        self.pings = 0

    def exchange(self, data: bytes, *, notification: bool = False) -> Reply:
        self.budget.take()
        if b'"id":"safe_rpc_audit_ping"' in data:
            self.pings += 1
        return self.answer(data)

    def connect_raw(self) -> socket.socket:
        self.budget.take()
        ours, theirs = socket.socketpair()
        ours.settimeout(self.timeout)
        self.kept.append(theirs)
        self.peer(theirs)
        return ours

    def close(self) -> None:
        for sock in self.kept:
            sock.close()


@pytest.fixture
def options() -> Options:
    return Options(probe=PROBE, slow_timeout=0.3, recover_timeout=0.2)


def test_target_that_does_not_speak_json_rpc_is_a_connection_error(options: Options) -> None:
    html = Scripted("http://127.0.0.1:8080/", lambda data: Reply(b"<html>", status=200))
    with pytest.raises(AuditConnectionError, match="did not answer a JSON-RPC request"):
        run_audit(html, options, ["conformance"])


def _verdicts(result: AuditResult) -> dict[str, tuple[str, str]]:
    return {o.check.id: (o.verdict, o.evidence) for o in result.outcomes}


def test_hostile_answers_are_judged_and_a_slow_recovery_fails_the_check(
    options: Options,
) -> None:
    state = {"down": 0}

    def server(data: bytes) -> Reply:
        if b'"id":"safe_rpc_audit_ping"' in data:
            if state["down"]:
                state["down"] -= 1
                return Reply(None, closed=True)
            return error(-32601, "safe_rpc_audit_ping")
        if b'"id": "h1"' in data:
            return Reply(b"Internal Server Error", status=500)  # no JSON-RPC answer
        if data.endswith(b"[1,2"):
            return error(-32600)  # the wrong code for a parse error
        if b'"method":{"name"' in data:
            state["down"] = 1  # the server goes away, and is back for the next ping
            raise AuditConnectionError("cannot connect: ConnectionResetError")
        if len(data) > 500_000:
            return Reply(b"[" * 64, truncated=True, status=200)
        return error(-32700)

    result = run_audit(Scripted("http://127.0.0.1:8080/", server), options, ["hostile"])
    got = _verdicts(result)
    assert got["h.method-echo"][0] == "fail"
    assert "no JSON-RPC answer" in got["h.method-echo"][1]
    assert got["h.parse-error-text"][0] == "warn"
    assert got["h.parse-error-text"][1].startswith("error -32600, expected -32700: HTTP 200")
    assert got["h.invalid-request-text"][0] == "fail"
    # It missed one liveness ping and answered the next: not at once, so the check fails.
    assert "did not answer for 0 s after this (SR-45)" in got["h.invalid-request-text"][1]
    assert "server unreachable" in got["h.invalid-request-text"][1]
    oversized = [i for i, (v, e) in got.items() if "answer over 8 MiB" in e]
    assert oversized  # SR-15: every large input got an answer over the cap
    assert all(got[i][0] == "warn" for i in oversized)


def test_invalid_params_probe_that_runs_the_method_is_a_warning(options: Options) -> None:
    options.method = "add"
    options.probe_invalid_params = True

    def server(data: bytes) -> Reply:
        if b'"id": "h4"' in data:
            return Reply(b'{"jsonrpc":"2.0","result":5,"id":"h4"}', status=200)
        return error(-32601, "safe_rpc_audit_ping")

    options.skip = ("h.method", "h.parse", "h.invalid-request", *HOSTILE_IDS)
    result = run_audit(Scripted("http://127.0.0.1:8080/", server), options, ["hostile"])
    verdict, evidence = _verdicts(result)["h.invalid-params-text"]
    assert verdict == "warn"
    assert "ran with an unknown argument (SR-16)" in evidence


def test_connection_probes_cut_at_once_pass_and_a_dead_server_fails_them(
    options: Options,
) -> None:
    alive = {"yes": True}
    progress: list[str] = []

    def server(data: bytes) -> Reply:
        if b'"id":"safe_rpc_audit_ping"' in data:
            return (
                error(-32601, "safe_rpc_audit_ping") if alive["yes"] else Reply(None, closed=True)
            )
        alive["yes"] = False  # the batch probe kills it
        return Reply(b"garbage", status=None)

    target = Scripted("tcp://127.0.0.1:9000", server)
    result = run_audit(target, options, ["limits"], lambda s, d, t: progress.append(s))
    got = _verdicts(result)
    assert got["l.batch-size"][0] == "fail"
    assert "no JSON-RPC answer (SR-12)" in got["l.batch-size"][1]
    # The batch probe stopped the server: every later check is skipped, saying why.
    assert got["l.idle-connection"] == ("skip", "the server stopped answering after l.batch-size")
    assert any(s.startswith("limits") for s in progress)


def test_slow_probes_over_connections_the_server_cuts(options: Options) -> None:
    """Every connection is closed by the server at once: each probe passes, none raises
    (the first bytes of a probe may already meet a closed connection)."""
    state = {"alive": True}

    def server(data: bytes) -> Reply:
        return error(-32601, "safe_rpc_audit_ping") if state["alive"] else Reply(None, closed=True)

    options.skip = ("l.batch-size",)
    target = Scripted("tcp://127.0.0.1:9000", server)
    progress: list[str] = []
    result = run_audit(target, options, ["limits"], lambda s, d, t: progress.append(s))
    got = _verdicts(result)
    assert got["l.oversized-body"][0] == "pass"
    assert got["l.slow-body"][0] == "pass"
    assert got["l.idle-connection"][0] == "pass"
    assert "limits (3 connection probes, up to 0.3 s)" in progress


def test_server_that_dies_during_the_connection_probes_fails_them(options: Options) -> None:
    target_state = {"alive": True}

    def server(data: bytes) -> Reply:
        if target_state["alive"]:
            return error(-32601, "safe_rpc_audit_ping")
        return Reply(None, closed=True)

    def peer(sock: socket.socket) -> None:
        target_state["alive"] = False  # the server falls over when the probes connect
        sock.sendall(b"x")  # says something, keeps the connection open

    options.skip = ("l.batch-size",)
    result = run_audit(Scripted("tcp://127.0.0.1:9000", server, peer), options, ["limits"])
    for check in ("l.oversized-body", "l.slow-body", "l.idle-connection"):
        assert _verdicts(result)[check] == (
            "fail",
            "the server stopped answering after the slow probes",
        )


def test_ws_oversized_message_that_is_parsed_is_a_warning(options: Options) -> None:
    def server(data: bytes) -> Reply:
        return error(-32601, "x")  # parses 2 MiB and says: no such method

    options.skip = ("l.batch-size", "l.oversized-header", "l.slow-headers", "l.idle")
    result = run_audit(Scripted("ws://127.0.0.1:8080/", server), options, ["limits"])
    verdict, evidence = _verdicts(result)["l.oversized-body"]
    assert verdict == "warn"
    assert evidence.startswith("parsed a 2 MiB message")


# -- judging answers ------------------------------------------------------------------------------


def _json(value: object) -> Answer:
    return interpret(Reply(json.dumps(value).encode(), status=200))


def test_structured_results_and_malformed_errors_are_judged() -> None:
    point = {"jsonrpc": "2.0", "result": {"xs": [1, 2.0]}, "id": 1}
    assert match({**point, "result": {"xs": [1.0, 2]}}, _json(point)) is None
    assert match({**point, "result": {"xs": [1]}}, _json(point)) is not None
    want = {"jsonrpc": "2.0", "error": {"code": -32601, "message": "m"}, "id": 1}
    bad_code = {"jsonrpc": "2.0", "error": {"code": "x", "message": "m"}, "id": 1}
    bad_message = {"jsonrpc": "2.0", "error": {"code": -32601, "message": 7}, "id": 1}
    assert match(want, _json(bad_code)) == "no error object with an integer code"
    assert match(want, _json(bad_message)) == "error message is not a string"
    other = {"jsonrpc": "2.0", "result": 1, "id": 1}
    assert match([want], _json([other])) == f"no answer matches {show(want, 60)}"
    assert leaks([{"jsonrpc": "2.0", "result": 1, "id": 1}], "probe") is None
    assert repr(ANY) == "ANY"
    assert interpret(Reply(None, status=204)).describe() == "HTTP 204 no answer"


def test_budget_refuses_nonsense_and_counts_down() -> None:
    with pytest.raises(ValueError, match="max_requests must be >= 1"):
        Budget(0, 1.0)
    budget = Budget(2, 1e6)
    budget.take()
    assert budget.left == 1


def test_strict_json_batch_answer_and_corpus_files(tmp_path: Path) -> None:
    """A strict-JSON probe answered with a batch is "parsed"; corpus files the server
    crashes on fail, ones it wrongly parses or refuses are listed, an empty folder skips."""
    (tmp_path / "n_crash.json").write_bytes(b"[1,]")
    (tmp_path / "n_parsed.json").write_bytes(b"[2,]")
    (tmp_path / "n_empty.json").write_bytes(b"")
    (tmp_path / "y_parsed.json").write_bytes(b"[3]")

    def server(data: bytes) -> Reply:
        if data == b"[1,]":
            return Reply(None, closed=True)
        if data in (b"[2,]", b"[3]"):
            return Reply(b'{"jsonrpc":"2.0","result":1,"id":null}', status=200)
        return Reply(b'[{"jsonrpc":"2.0","result":1,"id":1}]', status=200)

    options = Options(probe=PROBE, corpus=tmp_path)
    ctx = Context(Scripted("tcp://127.0.0.1:9000", server), options)
    checks = {c.id: c for c in strict_json_checks(options)}
    assert checks["s.nan"].run(ctx).evidence.startswith("parsed it (a batch answer)")
    crashed = checks["s.corpus-n"].run(ctx)
    assert crashed.verdict == "fail"
    assert "1 with no JSON-RPC answer" in crashed.evidence
    (tmp_path / "n_crash.json").unlink()
    parsed = checks["s.corpus-n"].run(ctx)
    assert parsed.verdict == "fail"
    assert parsed.evidence.startswith("1/2 parsed: ")  # the empty file is not sent over TCP
    assert "n_parsed.json" in parsed.evidence
    answered = checks["s.corpus-y"].run(ctx)
    assert answered.verdict == "pass"  # answered with a result: parsed, as it should
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = {c.id: c for c in strict_json_checks(Options(probe=PROBE, corpus=empty))}
    assert nothing["s.corpus-y"].run(ctx) == Verdict("skip", "no JSONTestSuite files there")
