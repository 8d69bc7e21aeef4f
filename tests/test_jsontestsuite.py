"""The JSONTestSuite corpus (MIT; not in the repository: tests/corpora.py says where it is
read from) through rpc.dispatch, one test per file.

* ``n_`` files (must be rejected by any JSON parser): -32700.
* ``y_`` files (valid JSON, but none is a JSON-RPC request): an Invalid Request answer, one
  -32600, or one per element for a non-empty array; except the files in
  ``STRICTNESS_REJECTS``, which break a strictness rule of the parser (I-JSON, RFC 7493)
  and get -32700.
* ``i_`` files (implementation-defined): -32700 or an Invalid Request answer, never a crash.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cases import spec_server
from corpora import JSONTESTSUITE
from support import check_response

from safe_rpc._audit.cases import STRICTNESS_REJECTS

RPC = spec_server()


def files(prefix: str) -> list[object]:
    return JSONTESTSUITE.params("test_parsing", prefix)


def codes(raw: bytes | None) -> list[int]:
    answer = check_response(raw)
    entries = answer if isinstance(answer, list) else [answer]
    return [entry["error"]["code"] for entry in entries]


def test_corpus_is_complete() -> None:
    """The corpus read holds the 318 files of the upstream test_parsing/, with its licence."""
    corpus = JSONTESTSUITE.require()
    assert len(list((corpus / "test_parsing").iterdir())) == 318
    assert (corpus / "LICENSE").is_file()


@pytest.mark.parametrize("path", files("n_"))
def test_n_files_are_parse_errors(path: Path) -> None:
    """Invalid JSON is -32700."""
    assert codes(RPC.dispatch(path.read_bytes())) == [-32700]


@pytest.mark.parametrize("path", files("y_"))
def test_y_files_are_invalid_requests(path: Path) -> None:
    """Valid JSON that is not a request is -32600 (per element for a non-empty array)."""
    got = codes(RPC.dispatch(path.read_bytes()))
    if path.name in STRICTNESS_REJECTS:
        assert got == [-32700]
        return
    value = json.loads(path.read_bytes())
    expected = len(value) if isinstance(value, list) and value else 1
    assert got == [-32600] * expected


@pytest.mark.parametrize("path", files("i_"))
def test_i_files_never_crash(path: Path) -> None:
    """Implementation-defined inputs get -32700 or an Invalid Request answer."""
    got = codes(RPC.dispatch(path.read_bytes()))
    assert got == [-32700] or set(got) == {-32600}
