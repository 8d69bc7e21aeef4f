"""``safe-rpc keygen`` and ``safe-rpc token`` run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from safe_rpc import Keyring


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safe_rpc", *args], capture_output=True, text=True, timeout=60
    )


def test_keygen_then_token(tmp_path: Path) -> None:
    """keygen writes a 0600 key file; token prints a token that the file verifies."""
    keys = tmp_path / "keys.json"
    made = cli("keygen", "--out", str(keys), "--audience", "calc")
    assert made.returncode == 0, made.stderr
    assert keys.stat().st_mode & 0o777 == 0o600
    issued = cli(
        "token", "--keys", str(keys), "--subject", "alice", "--scope", "a:b", "--ttl", "60"
    )
    assert issued.returncode == 0, issued.stderr
    principal = Keyring.from_file(keys).verify(issued.stdout.strip())
    assert principal.subject == "alice"
    assert principal.scopes == {"a:b"}


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    """An existing key file is kept unless --force is given; the error is one line."""
    keys = tmp_path / "keys.json"
    assert cli("keygen", "--out", str(keys), "--audience", "a").returncode == 0
    again = cli("keygen", "--out", str(keys), "--audience", "a")
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert cli("keygen", "--out", str(keys), "--audience", "a", "--force").returncode == 0


def test_token_errors_are_one_line(tmp_path: Path) -> None:
    """A missing key file or a bad ttl is one clear line and a non-zero exit."""
    missing = cli("token", "--keys", str(tmp_path / "nope.json"), "--subject", "a")
    assert missing.returncode == 2
    assert "cannot read key file" in missing.stderr
    assert "Traceback" not in missing.stderr
    keys = tmp_path / "k.json"
    cli("keygen", "--out", str(keys), "--audience", "a")
    bad_ttl = cli("token", "--keys", str(keys), "--subject", "a", "--ttl", "99999")
    assert bad_ttl.returncode == 2
    assert "ttl" in bad_ttl.stderr
    nowhere = cli("keygen", "--out", str(tmp_path / "no" / "dir.json"), "--audience", "a")
    assert nowhere.returncode == 2
    assert "cannot write" in nowhere.stderr


def test_help_shows_examples() -> None:
    """Each subcommand's help includes an example line."""
    for command in ("keygen", "token"):
        shown = cli(command, "--help")
        assert shown.returncode == 0
        assert "example:" in shown.stdout
    top = cli()
    assert top.returncode == 2
    assert "safe-rpc" in top.stdout
