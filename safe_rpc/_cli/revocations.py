"""``safe-rpc revocations``: list what a store holds revoked."""

from __future__ import annotations

import argparse
import json
import math
from datetime import UTC, datetime
from typing import Any

from .._core.logs import log_safe
from .._store.base import StoreUnavailable
from . import CLIError, subcommand
from .revoke import open_store

HELP = """\
List the revocations in a store: key ids, token ids (with the time they are kept until)
and subjects (with the time before which their tokens are refused).

examples:
  safe-rpc revocations --store sqlite:///state.db
  safe-rpc revocations --store redis://redis.internal:6379/0 --json
"""


def add_parser(subparsers: Any) -> None:
    parser = subcommand(subparsers, "revocations", "list a store's revocations", HELP, run)
    parser.add_argument("--store", required=True, metavar="URL", help="the servers' --store")
    parser.add_argument("--json", action="store_true", help="one JSON object")


def _when(stamp: float) -> str:
    return "forever" if math.isinf(stamp) else datetime.fromtimestamp(stamp, UTC).isoformat()


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        held = store.revocations()
    except StoreUnavailable as exc:
        raise CLIError(str(exc)) from None
    finally:
        store.close()
    if args.json:
        data = {
            "version": held.version,
            "kids": sorted(held.kids),
            "jtis": dict(sorted(held.jtis.items())),
            "subjects": dict(sorted(held.subjects.items())),
        }
        print(json.dumps(data, indent=2))
        return 0
    print(f"{store.describe()}: version {held.version}")
    # Values came from whoever wrote the store: printed escaped, one per line (SR-43).
    for kid in sorted(held.kids):
        print(f"kid      {log_safe(kid)}")
    for jti, until in sorted(held.jtis.items()):
        print(f"jti      {log_safe(jti)} until {_when(until)}")
    for sub, before in sorted(held.subjects.items()):
        print(f"subject  {log_safe(sub)} issued before {_when(before)}")
    return 0
