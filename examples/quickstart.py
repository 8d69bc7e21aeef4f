"""The Quickstart service: ``python -m examples.quickstart`` serves it on 127.0.0.1:8000.

It prints a ready development token and a ``curl`` line that calls a protected method.
The key is generated at start-up and lives only in this process: fine for trying things,
never for production (there, use ``safe-rpc keygen`` and ``safe-rpc serve --keys``).
"""

from __future__ import annotations

import sys
from typing import Annotated

from pydantic import Field

from safe_rpc import Context, Keyring, RPCServer, serve

keyring = Keyring.generate(audience="quickstart")  # development only: a new key every start
rpc = RPCServer(keyring=keyring)
_notes: dict[str, list[str]] = {}


@rpc.method(public=True)
def add(a: int, b: int) -> int:
    """Public: no token needed."""
    return a + b


@rpc.method(name="notes.add", scopes=["notes:write"])
def add_note(ctx: Context, text: Annotated[str, Field(min_length=1, max_length=200)]) -> int:
    """Store a note for the caller; returns how many notes they have."""
    assert ctx.principal is not None  # guaranteed for a scoped method
    notes = _notes.setdefault(ctx.principal.subject, [])
    notes.append(text)
    return len(notes)


@rpc.method(name="notes.list", scopes=["notes:read"])
def list_notes(ctx: Context) -> list[str]:
    """The caller's own notes."""
    assert ctx.principal is not None
    return list(_notes.get(ctx.principal.subject, []))


def main(argv: list[str]) -> None:
    address = argv[0] if argv else "127.0.0.1:8000"
    token = keyring.issue("dev", ["notes:read", "notes:write"], ttl=3600)
    port = address.rsplit(":", 1)[1]
    body = '{"jsonrpc":"2.0","method":"notes.add","params":{"text":"hello"},"id":1}'
    print(f"development token (valid 1 hour): {token}")
    print("call a protected method:")
    print(
        f"  curl -s http://127.0.0.1:{port}/ -H 'Content-Type: application/json' "
        f"-H 'Authorization: Bearer {token}' -d '{body}'"
    )
    print("or, with the client:")
    print(f"  safe-rpc call http://127.0.0.1:{port}/ notes.list --token {token}", flush=True)
    serve(rpc, http=address)


if __name__ == "__main__":
    main(sys.argv[1:])
