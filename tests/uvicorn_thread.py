"""Run any ASGI app with uvicorn on 127.0.0.1 in a background thread (a real socket, in
this process: for tests that must inspect the server's side, e.g. its spans or metrics)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn


@contextmanager
def running(
    app: Any, *, lifespan: Literal["auto", "on", "off"] = "on", **options: Any
) -> Iterator[int]:
    """Serve ``app`` until the block ends; yields the port. ``options`` go to uvicorn."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan=lifespan, log_level="warning", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped during startup"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(20)
