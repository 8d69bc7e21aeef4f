"""What a client transport is: the interface ``Client`` and ``AsyncClient`` are written against.

A transport moves one encoded JSON-RPC message out and the peer's answer back. It knows
nothing of JSON-RPC beyond what routing needs: ``ClientProtocol`` builds the bytes and
checks the answer. Every transport must

* refuse an answer larger than ``cap`` bytes while reading it (before buffering it whole),
  raising ``InvalidResponse``;
* turn every I/O failure and timeout into ``TransportError`` (never an ``OSError`` or a
  library's own exception), with a message that names no peer data;
* authenticate with ``token`` the way its wire requires (a header per request, or a first
  ``rpc.authenticate`` message per connection) and raise the rebuilt error if refused.

HTTP(S) and framed TCP/TLS implement it in ``_transports``; a new transport (WebSocket...)
implements it and adds its URL schemes to the tables in ``_clients``.
"""

from __future__ import annotations

import ssl
from typing import Protocol, TypeVar

__all__ = ["AsyncTransport", "Transport", "TransportFactory"]

T_co = TypeVar("T_co", covariant=True)


class Transport(Protocol):
    """A blocking transport (used by ``Client``)."""

    def send(self, data: bytes, *, expect: bool, key: int | None) -> bytes | None:
        """Send one message; return the answer's bytes, or ``None`` when none is expected.

        Args:
            data: one encoded request, notification or batch.
            expect: whether the peer answers (False for notifications only).
            key: the smallest request id in ``data`` (``None`` for notifications); lets a
                transport with concurrent calls on one connection route answers.
        """
        ...

    def close(self) -> None:
        """Release the connection(s); the transport may reconnect on the next ``send``."""
        ...


class AsyncTransport(Protocol):
    """The asyncio twin of ``Transport`` (used by ``AsyncClient``)."""

    async def send(self, data: bytes, *, expect: bool, key: int | None) -> bytes | None:
        """As ``Transport.send``; concurrent calls are allowed."""
        ...

    async def close(self) -> None:
        """As ``Transport.close``."""
        ...


class TransportFactory(Protocol[T_co]):
    """How the clients make a transport for a URL (a transport class fits)."""

    def __call__(
        self, url: str, *, token: str | None, timeout: float, cap: int, ssl: ssl.SSLContext | None
    ) -> T_co: ...
