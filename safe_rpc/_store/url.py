"""``store_from_url``: one string names a store (``safe-rpc serve --store URL``)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

from .._core.errors import ConfigError
from .base import Store
from .memory import MemoryStore

__all__ = ["store_from_url"]

USAGE = (
    "use memory, sqlite:///PATH, redis://[:PASSWORD@]HOST[:PORT][/DB][?prefix=NAME] or rediss://..."
)


def store_from_url(url: str, *, timeout: float = 1.0) -> Store:
    """The store a URL names.

    ``memory``; ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (the
    SQLAlchemy spelling); ``redis://`` and ``rediss://`` (TLS) with an optional password and
    database number. Nothing is contacted here; ``ping()`` checks reachability.

    Raises:
        ConfigError: for anything else (the message never repeats a password).
    """
    if url == "memory":
        return MemoryStore(timeout=timeout)
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"SQLite store URL needs a path: sqlite:///PATH ({USAGE})")
        return SQLiteStore(path, timeout=timeout)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStore

        try:
            parts = urlsplit(url)
            db = parts.path.strip("/")
            port = parts.port  # raises ValueError for a non-numeric port
            query = parse_qs(parts.query, strict_parsing=bool(parts.query))
        except ValueError:
            raise ConfigError(f"malformed Redis URL ({USAGE})") from None
        if not parts.hostname or (db and not db.isdigit()) or (port is not None and port == 0):
            raise ConfigError(f"malformed Redis URL ({USAGE})")
        # ?prefix=NAME: (the only option) keeps two services apart on one Redis.
        if query.keys() - {"prefix"} or len(query.get("prefix", [""])) != 1:
            raise ConfigError(f"the only option of a Redis store URL is ?prefix=NAME ({USAGE})")
        prefix = query.get("prefix", ["safe_rpc:"])[0]
        return RedisStore(urlunsplit(parts._replace(query="")), prefix=prefix, timeout=timeout)
    raise ConfigError(f"unknown store {scheme or url[:20]!r}: {USAGE}")
