"""``python -m safe_rpc``: the same command line as ``safe-rpc``."""

from ._cli.main import main

raise SystemExit(main())
