"""Memory and time under the hostile corpus (issue 6, SR-04/SR-05/SR-08/SR-10).

Peak Python memory while handling each hostile message stays within a stated multiple of
the message size (plus a small constant for the interpreter's own work), and the oracle
itself is shown to catch wrong answers.
"""

from __future__ import annotations

import json

import pytest
from fuzz_server import NORMAL, NORMAL_ANSWER, make_fuzz_server, traced_peak
from strategies import check_answer, corpus_files

from safe_rpc import Limits

RPC = make_fuzz_server()
#: Peak traced memory may be at most this multiple of the input size, plus SLACK bytes.
MULTIPLE = 12
SLACK = 256 * 1024
MiB = 1024 * 1024


def _hostile_bodies() -> list[tuple[str, bytes]]:
    bodies = [(p.name, p.read_bytes()) for p in corpus_files()]
    collide = ",".join(str(k * (2**61 - 1)) for k in range(1, 20_000))
    bodies += [
        ("open_arrays_1MB", b"[" * 1_000_000),
        ("int_array_1MiB", b"[" + b"1," * (MiB // 2 - 2) + b"1]"),
        (
            "hash_collision_ints",
            f'{{"jsonrpc":"2.0","method":"add","params":[{collide}],"id":1}}'.encode(),
        ),
        ("string_1MiB", b'"' + b"a" * (MiB - 3) + b'"'),
        ("escaped_quotes_unterminated", b'"' + b'\\"' * (MiB // 2 - 1)),
        ("many_keys", json.dumps({f"k{i}": i for i in range(60_000)}).encode()[: MiB - 1]),
        ("deep_objects", b'{"a":' * 5000),
        ("nan_flood", b"[" + b"NaN," * 200_000 + b"1]"),
        ("long_int", b"[" + b"9" * 500_000 + b"]"),
    ]
    return [(name, body) for name, body in bodies if len(body) <= Limits().max_request_bytes]


@pytest.mark.parametrize(
    ("name", "body"), _hostile_bodies(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_sr04_peak_memory_bounded_by_input_size(name: str, body: bytes) -> None:
    """Handling a hostile message never allocates more than a fixed multiple of its size."""
    raw, peak = traced_peak(lambda: RPC.dispatch(body))
    assert peak <= MULTIPLE * len(body) + SLACK, (name, peak, len(body))
    check_answer(body, raw)
    assert RPC.dispatch(NORMAL) == NORMAL_ANSWER


@pytest.mark.parametrize(
    ("data", "wrong"),
    [
        (
            b'{"jsonrpc":"2.0","method":"add","params":[1,2]}',
            b'{"jsonrpc":"2.0","result":3,"id":null}',
        ),
        (
            b"[1]",
            b'{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request"},"id":null}',
        ),
        (b"{", b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"oops"},"id":null}'),
        (b"{", None),
        (
            b'{"jsonrpc":"2.0","method":"add","id":1}',
            b'{"jsonrpc":"2.0","error":{"code":-1,"message":"x"},"id":1}',
        ),
    ],
)
def test_oracle_rejects_wrong_answers(data: bytes, wrong: bytes | None) -> None:
    """The shared oracle fails on answers of the wrong shape, code or message."""
    with pytest.raises(AssertionError):
        check_answer(data, wrong)
