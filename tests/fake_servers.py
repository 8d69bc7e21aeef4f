"""Hostile servers for client tests and benchmarks/adversarial.py: a loopback server whose
connections go to a handler, a decompression bomb, an error class with strict data."""

from __future__ import annotations

import contextlib
import functools
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydantic import BaseModel
from tcp_support import recv_exactly

from safe_rpc import ErrorRegistry, RPCError

MiB = 1 << 20

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


@functools.cache
def gzip_bomb() -> bytes:
    """1 GiB of zeros gzipped twice: about 2.5 KB on the wire."""
    zeros = bytes(MiB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    # After a full flush the compressor forgets what came before, so every further MiB of
    # zeros compresses to the same bytes: repeat them instead of compressing 1 GiB.
    first = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    final_block = deflate.flush()[:-8]  # its gzip trailer counts only 2 MiB: rebuilt below
    crc = 0
    for _ in range(1024):
        crc = zlib.crc32(zeros, crc)
    inner = first + again * 1023 + final_block + struct.pack("<II", crc, (1 << 30) & 0xFFFFFFFF)
    outer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return outer.compress(inner) + outer.flush()


class InsufficientFunds(RPCError, register=False):
    """The README's example application error; in ``ERRORS`` only (1001 is examples.bank's)."""

    code = 1001
    message = "insufficient funds"

    class Data(BaseModel):
        balance: int


ERRORS = ErrorRegistry()
ERRORS.add(InsufficientFunds)


def read_frame(conn: socket.socket) -> bytes | None:
    """One length-prefixed frame's payload, as a fake TCP server reads it; None once the
    peer closed (or reset) the connection."""
    try:
        return recv_exactly(conn, int.from_bytes(recv_exactly(conn, 4), "big"))
    except ConnectionError:
        return None
