"""A loopback server for client tests: each accepted connection goes to a handler."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: handle(connection, its number from 0, the stop event), run in a thread per connection.
Handler = Callable[[socket.socket, int, threading.Event], None]


@contextmanager
def loopback_server(handle: Handler, *, http: bool) -> Iterator[str]:
    """Accept on 127.0.0.1 until the block ends; yield the URL (http:// or tcp://)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def guarded(conn: socket.socket, number: int) -> None:
        # OSError: the client went away, which is what these servers expect.
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            handle(conn, number, stop)

    def run() -> None:
        number = 0
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=guarded, args=(conn, number), daemon=True).start()
            number += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/" if http else f"tcp://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
