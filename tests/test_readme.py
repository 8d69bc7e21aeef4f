"""The README's Python snippets run as written, in order, in one fresh interpreter
(issue 8): the README cannot drift from the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from servers import APPS, REPO_ROOT, serve

sys.path.insert(0, str(APPS))
import readme_app

README = REPO_ROOT / "README.md"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_quickstart_lines_matching_ci() -> None:
    """The Quickstart test line is exactly the one .ci/run runs."""
    text = README.read_text(encoding="utf-8")
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_line = 'python -m pip install ".[test]" && pytest --cov'
    assert f"```sh\n{test_line}\n```" in text
    assert f"\n{test_line}\n" in ci
    assert "```sh\npython -m pip install . && python -m examples.quickstart\n```" in text


def test_python_snippets_run_as_written(tmp_path: Path) -> None:
    """Every ```python block, in order, against a live server standing in for the README's."""
    blocks = snippets()
    assert len(blocks) >= 6
    token = readme_app.keyring.issue("reader", ["account:write"])
    with serve("readme_app:rpc") as server:
        # The client snippets use `token`, a token for the server they call (the README's
        # tokens section reuses the name for its own in-process keyring).
        first_client = next(i for i, b in enumerate(blocks) if "Client(" in b)
        blocks.insert(first_client, f"token = {token!r}\n")
        source = "\n\n".join(blocks).replace("http://127.0.0.1:8000/", server.url)
        script = tmp_path / "readme_snippets.py"
        script.write_text(source, encoding="utf-8")
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '{"jsonrpc":"2.0","result":5,"id":1}' in out
    assert "alice withdrew 5" in out
    assert "[3, 7]" in out
    assert out.rstrip().endswith("90")  # the balance after two withdrawals of 5
