"""The README's snippets run as written, in order, in one fresh interpreter (issues 8, 16):
the client snippets call the service the README itself shows how to start, with the key
and token files its own shell lines make."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from servers import REPO_ROOT, started

README = REPO_ROOT / "README.md"


def readme() -> str:
    return README.read_text(encoding="utf-8")


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", readme(), re.S)


def service_lines() -> list[str]:
    """The README's shell block that makes keys and a token and starts the service."""
    block = re.search(r"```sh\n(mkdir -p \.safe-rpc\n.*?)```", readme(), re.S)
    assert block is not None, "the README no longer shows how to start its client service"
    return block[1].strip().splitlines()


def safe_rpc_command(line: str) -> list[str]:
    words = shlex.split(line)
    assert words[0] == "safe-rpc"
    return [sys.executable, "-m", "safe_rpc", *words[1:]]


def test_readme_has_quickstart_lines_matching_ci() -> None:
    """The Quickstart test line is exactly the one .ci/run runs."""
    text = readme()
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_line = 'python -m pip install ".[test]" && pytest --cov'
    assert f"```sh\n{test_line}\n```" in text
    assert f"\n{test_line}\n" in ci
    assert "```sh\npython -m pip install . && python -m examples.quickstart\n```" in text


def test_python_snippets_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block, in order, against the service started by the README's lines."""
    blocks = snippets()
    assert len(blocks) >= 6
    *setup, serve_line = service_lines()
    for line in setup:  # run in a scratch directory: the files land in its .safe-rpc/
        if line.startswith("mkdir -p "):
            (tmp_path / line.split()[-1]).mkdir(parents=True)
            continue
        invocation, _, target = line.partition(" > ")
        result = subprocess.run(
            safe_rpc_command(invocation), cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        if target:
            (tmp_path / target.strip()).write_text(result.stdout, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # `examples` from the scratch directory
    command = [*safe_rpc_command(serve_line), "--http", "127.0.0.1:0"]
    with started(command, expect={"http"}, cwd=tmp_path) as server:
        source = "\n\n".join(blocks).replace("http://127.0.0.1:8000/", server.url)
        script = tmp_path / "readme_snippets.py"
        script.write_text(source, encoding="utf-8")
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '{"jsonrpc":"2.0","result":5,"id":1}' in out
    assert "alice withdrew 5" in out
    assert "[3, 7]" in out
    assert out.rstrip().endswith("90")  # the balance after two withdrawals of 5


def test_tokens_snippet_passes_mypy_strict(tmp_path: Path) -> None:
    """The withdraw handler as the README shows it type-checks under mypy --strict."""
    [block] = [b for b in snippets() if "def withdraw(ctx: Context" in b]
    script = tmp_path / "tokens_snippet.py"
    script.write_text(block, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout


def test_readme_key_and_token_files_are_ignored_by_git() -> None:
    """The tour writes keys.json, *.token and .safe-rpc/: none of them can be committed."""
    paths = [".safe-rpc/keys.json", ".safe-rpc/alice.token", "keys.json", "alice.token",
             "bank-keys.json"]  # fmt: skip
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.split() == paths
