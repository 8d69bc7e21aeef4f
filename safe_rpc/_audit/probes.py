"""The hostile and limits suites: inputs that hurt servers, and connection-level probes.

Hostile inputs come from ``cases.hostile_inputs`` (the same 1 MiB-class inputs the
benchmarks time against safe_rpc); after each one the engine checks the server still
answers. Connection-level probes (slow head, slow body, idle connection, oversized head and
body) hold one connection each and give up after ``--slow-timeout`` seconds: a server that
has not closed by then gets "warn" (the audit cannot tell a longer deadline from none).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from typing import Final

import h11

from .cases import hostile_inputs
from .checks import Check, Context, Options, judge_refusal
from .judge import Answer, Verdict, error_code, leaks, show
from .transports import read_http_response

__all__ = ["hostile_checks", "limits_checks"]

#: Entries in the batch-size probe: ten times safe_rpc's default cap (SR-14).
BATCH_PROBE: Final = 1000
#: Bytes of a body declared by the oversized-body probe, and bytes actually sent.
DECLARED_BODY: Final = 64 * 1024 * 1024
SENT_BODY: Final = 2 * 1024 * 1024
#: Size of the one header of the oversized-header probe (SR-20: 16 KiB is plenty).
BIG_HEADER: Final = 64 * 1024


def _request(method: str, id: object = 1, **extra: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, **extra, "id": id}).encode()


# -- hostile -------------------------------------------------------------------------------------


def hostile_checks(options: Options) -> list[Check]:
    probe = options.probe
    leak_probes = [
        ("h.method-echo", "SR-42", _request(probe, "h1"), -32601),
        ("h.parse-error-text", "SR-42, JSON-RPC 2.0 §5.1", _PARSE_ERROR, -32700),
        ("h.invalid-request-text", "SR-42, JSON-RPC 2.0 §5.1", _INVALID, -32600),
    ]
    checks = []
    for check_id, rule, template, code in leak_probes:
        data = template.replace(b"@", probe.encode())

        def leak(ctx: Context, data: bytes = data, code: int = code) -> Verdict:
            return _no_leak(ctx, data, code)

        checks.append(Check(check_id, "hostile", rule, show(data), leak))
    checks.append(_invalid_params_check(options))
    for name, data in hostile_inputs(probe).items():

        def run(ctx: Context, data: bytes = data) -> Verdict:
            answer = ctx.send(data)
            if answer.kind == "oversized":
                return Verdict("warn", f"answer over 8 MiB to {len(data):,} bytes (SR-15)")
            verdict = judge_refusal(answer, "pass")
            # The time is evidence only: it depends on the machine, so it decides nothing.
            return Verdict(verdict.verdict, f"{verdict.evidence} ({answer.elapsed:.1f} s)")

        check_id, rule = _HOSTILE[name]
        checks.append(
            Check(check_id, "hostile", rule, f"{len(data):,} bytes: {show(data, 40)}", run)
        )
    return checks


_PARSE_ERROR: Final = b'{"jsonrpc":"2.0","method":"@","params":[1,2'
_INVALID: Final = b'{"jsonrpc":"2.0","method":{"name":"@"},"id":"@"}'
#: Input name (cases.hostile_inputs) -> (check id, rule).
_HOSTILE: Final = {
    "1,000,000 bytes of '['": ("h.nested-arrays-1m", "SR-05, SR-12"),
    "1 MiB array of numbers": ("h.batch-of-numbers-1mib", "SR-14, SR-15"),
    "SR-10 hash-collision ints (0.5 MB)": ("h.hash-collision-ints", "SR-10"),
    "1 MiB string": ("h.string-1mib", "SR-04"),
    "object with 60,000 keys": ("h.object-60k-keys", "SR-10, SR-13"),
    "'{\"a\":' x 5000": ("h.nested-objects-5k", "SR-05, SR-12"),
    "unterminated string of escaped quotes": ("h.unterminated-escapes", "SR-11, SR-12"),
}


def _no_leak(ctx: Context, data: bytes, code: int) -> Verdict:
    return _no_leak_answer(ctx, ctx.send(data), code)


def _invalid_params_check(options: Options) -> Check:
    method = options.method
    if method is None or not options.probe_invalid_params:
        skip = Verdict("skip", "opt-in: --probe-invalid-params with --method")
        return Check("h.invalid-params-text", "hostile", "SR-42, SR-16", "(opt-in)", lambda c: skip)
    data = _request(method, "h4", params={options.probe: 0})

    def run(ctx: Context) -> Verdict:
        answer = ctx.send(data)
        if answer.kind == "json" and "result" in answer.value:
            return Verdict("warn", f"ran with an unknown argument (SR-16): {answer.describe()}")
        return _no_leak_answer(ctx, answer, -32602)

    return Check("h.invalid-params-text", "hostile", "SR-42, SR-16", show(data), run)


def _no_leak_answer(ctx: Context, answer: Answer, code: int) -> Verdict:
    """The answer is error ``code`` with no exception text (SR-42: fail) and none of the
    caller's input (warn: reflected input reaches whatever displays errors)."""
    if answer.kind != "json":
        return Verdict("fail", f"no JSON-RPC answer: {answer.describe()}")
    problem = leaks(answer.value, ctx.options.probe)
    if problem is not None:
        return Verdict("warn" if problem.startswith("caller input") else "fail", problem)
    got = error_code(answer.value)
    if got != code:
        return Verdict("warn", f"error {got}, expected {code}: {answer.describe()}")
    return Verdict("pass", f"fixed text: {answer.describe()}")


# -- limits --------------------------------------------------------------------------------------


def limits_checks(options: Options) -> list[Check]:
    probe = options.probe
    batch = json.dumps(
        [{"jsonrpc": "2.0", "method": probe, "id": i} for i in range(1, BATCH_PROBE + 1)]
    ).encode()
    wait = f"up to {options.slow_timeout:g} s"

    def batch_size(ctx: Context) -> Verdict:
        answer = ctx.send(batch)
        if answer.kind == "refused" or (answer.kind == "json" and isinstance(answer.value, dict)):
            return Verdict("pass", f"whole batch refused: {answer.describe()}")
        if answer.kind == "json":
            return Verdict(
                "warn", f"answered {len(answer.value)} of {BATCH_PROBE} entries: no batch cap"
            )
        return Verdict("fail", f"no JSON-RPC answer (SR-12): {answer.describe()}")

    return [
        Check("l.batch-size", "limits", "SR-14", f"{BATCH_PROBE} calls to {probe}", batch_size),
        Check("l.oversized-body", "limits", "SR-04, SR-27",
              f"declares {DECLARED_BODY >> 20} MiB, sends {SENT_BODY >> 20} MiB, waits {wait}",
              _oversized_body, slow=True),
        Check("l.oversized-header", "limits", "SR-20", f"one {BIG_HEADER >> 10} KiB header",
              _oversized_header, kinds=frozenset({"http", "ws"})),
        Check("l.slow-headers", "limits", "SR-17", f"a request head, a byte a second, {wait}",
              _slow_headers, kinds=frozenset({"http", "ws"}), slow=True),
        Check("l.slow-body", "limits", "SR-18, SR-28", f"a body or frame, a byte a second, {wait}",
              _slow_body, kinds=frozenset({"http", "tcp"}), slow=True),
        Check("l.idle-connection", "limits", "SR-19, SR-28", f"connects, sends nothing, {wait}",
              _idle, slow=True),
    ]  # fmt: skip


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closed ``sock`` (sending ``trickle`` a byte at a time), or
    None when it was still open after ``seconds``."""
    started = time.monotonic()
    step = min(1.0, max(0.05, seconds / 10))
    position = 0
    while (elapsed := time.monotonic() - started) < seconds:
        if trickle:
            try:
                sock.sendall(trickle[position % len(trickle) : position % len(trickle) + 1])
            except OSError:
                return elapsed
            position += 1
        sock.settimeout(min(step, max(0.01, seconds - elapsed)))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
        if not data:
            return time.monotonic() - started
        # An answer (408, an error frame): the connection should close right after.
    return None


def _bounded(ctx: Context, sock: socket.socket, what: str, trickle: bytes = b"") -> Verdict:
    bound = ctx.options.slow_timeout
    with contextlib.closing(sock):
        took = _closed_within(sock, bound, trickle)
    if took is None:
        return Verdict("warn", f"{what}: still open after {bound:g} s")
    return Verdict("pass", f"{what}: closed by the server after {took:.1f} s")


def _head(ctx: Context, extra: str = "", length: int = 0) -> bytes:
    target = ctx.transport.target
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    return ("\r\n".join(lines) + "\r\n" + extra).encode()


def _slow_headers(ctx: Context) -> Verdict:
    sock = ctx.transport.connect_raw()
    trickle = _head(ctx) + b"X-Safe-Rpc-Audit: " + b"a" * 4096
    return _bounded(ctx, sock, "trickled request head", trickle)


def _idle(ctx: Context) -> Verdict:
    return _bounded(ctx, ctx.transport.connect_raw(), "idle connection")


def _slow_body(ctx: Context) -> Verdict:
    sock = ctx.transport.connect_raw()
    tcp = ctx.transport.target.kind == "tcp"
    # A server that cut the connection at once (over its connection limit, say) makes this
    # first send fail: _bounded then sees the closed connection, which is the pass.
    with contextlib.suppress(OSError):
        sock.sendall((1000).to_bytes(4, "big") if tcp else _head(ctx, length=1000) + b"\r\n")
    return _bounded(ctx, sock, "trickled frame" if tcp else "trickled body", b" " * 1000)


def _oversized_header(ctx: Context) -> Verdict:
    sock = ctx.transport.connect_raw()
    body = _request(ctx.options.probe, "l3")
    big = f"X-Safe-Rpc-Audit: {'a' * BIG_HEADER}\r\n\r\n"
    with contextlib.closing(sock):
        with contextlib.suppress(OSError):
            sock.sendall(_head(ctx, big, len(body)) + body)
        reply = read_http_response(h11.Connection(h11.CLIENT), sock)
    if reply.status is None or reply.status >= 400:
        what = f"HTTP {reply.status}" if reply.status else "connection closed"
        return Verdict("pass", f"{what} for a {BIG_HEADER >> 10} KiB header")
    return Verdict("warn", f"HTTP {reply.status}: accepted a {BIG_HEADER >> 10} KiB header")


def _oversized_body(ctx: Context) -> Verdict:
    kind = ctx.transport.target.kind
    if kind == "ws":
        data = _request(ctx.options.probe, "l2", params=["x" * SENT_BODY])
        answer = ctx.send(data)
        if answer.kind == "json" and error_code(answer.value) == -32601:
            return Verdict("warn", f"parsed a {SENT_BODY >> 20} MiB message: {answer.describe()}")
        return Verdict("pass", f"{SENT_BODY >> 20} MiB message refused: {answer.describe()}")
    sock = ctx.transport.connect_raw()
    if kind == "tcp":
        head = (2**31 - 1).to_bytes(4, "big")
    else:
        head = _head(ctx, length=DECLARED_BODY) + b"\r\n"
    started = time.monotonic()
    with contextlib.closing(sock):
        try:
            sock.sendall(head)
            sent = 0
            while sent < SENT_BODY and not _readable(sock):
                sock.sendall(b" " * 65536)
                sent += 65536
        except TimeoutError:
            pass  # the server stopped reading without answering: see whether it closes
        except OSError:
            return Verdict("pass", f"cut off after {time.monotonic() - started:.1f} s")
        sock.settimeout(ctx.options.slow_timeout)
        try:
            first = sock.recv(65536)
        except TimeoutError:
            return Verdict("warn", f"no answer to a declared {DECLARED_BODY >> 20} MiB body")
        except OSError:
            first = b""
    took = time.monotonic() - started
    if not first:
        return Verdict("pass", f"connection closed after {took:.1f} s")
    line = first.split(b"\r\n", 1)[0] if kind == "http" else first
    return Verdict("pass", f"answered after {took:.1f} s: {show(line, 60)}")


def _readable(sock: socket.socket) -> bool:
    """True once the server sent something (an early 413) or closed."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)
