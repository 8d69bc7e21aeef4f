"""``RedisStore``: state in Redis (>= 6) or Valkey, shared by a fleet of hosts.

redis-py's asyncio client for the event loop and its synchronous twin for synchronous
callers (created on first use). Every quota decision is one Lua script (``EVAL``): read,
decide and write happen inside Redis, so no two processes can both admit the last call of
a quota. Time inside scripts is Redis' own ``TIME``, so hosts with skewed clocks agree.
Connections are re-established by redis-py on the next call after a failure. A command
is retried once at once on a connection error (a pooled connection that died with a
restarted Redis); the whole call still waits at most ``timeout``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .._core.errors import ConfigError
from .base import KINDS, Revocations, Rule, StoreUnavailable, check_channel

if TYPE_CHECKING:
    import redis as sync_redis
    import redis.asyncio as async_redis

__all__ = ["RedisStore"]

T = TypeVar("T")

# KEYS: one counter per rule. ARGV: limit, period (microseconds) per rule.
# Returns {admitted (0/1), wait in microseconds}. GCRA, as in base.gcra_all.
_HIT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local news, worst = {}, 0
for i = 1, #KEYS do
  local limit, period = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  news[i] = tat + period / limit
  local over = news[i] - period - now
  if over > worst then worst = over end
end
if worst > 0 then return {0, string.format('%.0f', worst)} end
local wait = 0
for i = 1, #KEYS do
  local limit, period = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local ttl = math.ceil((news[i] - now) / 1000) + 1
  redis.call('SET', KEYS[i], string.format('%.0f', news[i]), 'PX', ttl)
  local w = news[i] + period / limit - period - now
  if w > wait then wait = w end
end
return {1, string.format('%.0f', wait)}
"""

# KEYS: the kind's hash, the version counter, the jti hash. ARGV: value, until ('inf' for
# never), now. Keeps the later of two times for one value; sweeps expired jtis.
_REVOKE: Final = """
local new = ARGV[2]
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  if cur == 'inf' or new == 'inf' then new = 'inf'
  elseif tonumber(cur) > tonumber(new) then new = cur end
end
redis.call('HSET', KEYS[1], ARGV[1], new)
local now, all = tonumber(ARGV[3]), redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  if all[i + 1] ~= 'inf' and tonumber(all[i + 1]) < now then
    redis.call('HDEL', KEYS[3], all[i])
  end
end
return redis.call('INCR', KEYS[2])
"""


class RedisStore:
    """Security state in Redis: shared by every process of every host that uses the URL.

    Example:
        ```python
        from safe_rpc import RedisStore, RPCServer

        rpc = RPCServer(store=RedisStore("rediss://:secret@redis.internal:6380/0"))
        ```

    Args:
        url: ``redis://[:password@]host[:port][/db]`` or ``rediss://`` for TLS.
        prefix: put before every key and channel, so several services can share a Redis.
        timeout: most seconds any one operation may take.

    Raises:
        ConfigError: for a URL that is not ``redis://`` or ``rediss://``, or when the
            ``redis`` package is missing (``pip install 'safe-rpc[redis]'``).
    """

    kind = "redis"
    shared = True

    def __init__(self, url: str, *, prefix: str = "safe_rpc:", timeout: float = 1.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ConfigError(f"{self._redact(url)!r} is not a redis:// or rediss:// URL")
        try:
            import redis  # noqa: F401  (the optional dependency)
        except ImportError:
            raise ConfigError("RedisStore needs redis-py: pip install 'safe-rpc[redis]'") from None
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self._async: async_redis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard: AsyncGenerator[None, None] | None = None
        self._sync: sync_redis.Redis | None = None
        self._keys = {kind: f"{prefix}rev:{kind}" for kind in KINDS}
        self._version_key = f"{prefix}rev:version"

    @staticmethod
    def _redact(url: str) -> str:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"***@{host}"))

    def describe(self) -> str:
        return self._redact(self.url)

    def _options(self) -> dict[str, Any]:
        return {"socket_timeout": self.timeout, "socket_connect_timeout": self.timeout}

    async def _client(self) -> async_redis.Redis:
        import redis.asyncio as async_redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        loop = asyncio.get_running_loop()
        if self._async is not None and self._loop is loop:
            return self._async
        # An asyncio client belongs to the loop it was made in, and its connections
        # must be closed there: once the loop is closed they cannot be, and the garbage
        # collector finds them open (ResourceWarning). The guard is an async generator
        # started on this loop, so the loop's shutdown_asyncgens() (asyncio.run and
        # uvicorn call it before closing the loop) finalises it, and it closes the
        # client, even if aclose() is never called.
        client = async_redis.from_url(self.url, retry=Retry(NoBackoff(), 1), **self._options())
        guard = _close_with_loop(client, self.timeout)
        await anext(guard)  # runs to its yield at once: registered with this loop
        self._async, self._loop, self._guard = client, loop, guard
        return client

    def _sync_client(self) -> sync_redis.Redis:
        import redis as sync_redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if self._sync is None:
            self._sync = sync_redis.Redis.from_url(
                self.url, retry=Retry(NoBackoff(), 1), **self._options()
            )
        return self._sync

    async def _call(self, work: Callable[[async_redis.Redis], Awaitable[T]]) -> T:
        from redis.exceptions import AuthenticationError, RedisError

        try:
            async with asyncio.timeout(self.timeout):
                return await work(await self._client())
        except TimeoutError:
            raise StoreUnavailable(
                f"{self.describe()} did not answer in time", reason="timed out"
            ) from None
        except AuthenticationError:
            raise StoreUnavailable(
                f"{self.describe()} refused the password", reason="wrong password"
            ) from None
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc) from None

    def _call_sync(self, work: Callable[[sync_redis.Redis], T]) -> T:
        from redis.exceptions import AuthenticationError, RedisError

        try:
            return work(self._sync_client())
        except AuthenticationError:
            raise StoreUnavailable(
                f"{self.describe()} refused the password", reason="wrong password"
            ) from None
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: BaseException) -> StoreUnavailable:
        name = type(exc).__name__
        return StoreUnavailable(f"{self.describe()} is not reachable ({name})", reason=name)

    def ping(self) -> None:
        self._call_sync(lambda r: r.ping())

    async def ping_async(self) -> None:
        await self._call(lambda r: r.ping())

    # -- revocations ------------------------------------------------------------------------

    def _revoke_args(
        self, kind: str, value: str, until: float | None
    ) -> tuple[list[str], list[str]]:
        if kind not in KINDS:
            raise ValueError(f"revocation kind must be one of {KINDS}")
        stamp = "inf" if until is None else repr(float(until))
        keys = [self._keys[kind], self._version_key, self._keys["jti"]]
        return keys, [value, stamp, repr(time.time())]

    def revoke(self, kind: str, value: str, until: float | None) -> None:
        keys, args = self._revoke_args(kind, value, until)
        self._call_sync(lambda r: r.eval(_REVOKE, len(keys), *keys, *args))

    async def revoke_async(self, kind: str, value: str, until: float | None) -> None:
        keys, args = self._revoke_args(kind, value, until)
        await self._call(lambda r: r.eval(_REVOKE, len(keys), *keys, *args))

    def version(self) -> int:
        return int(self._call_sync(lambda r: r.get(self._version_key)) or 0)

    async def version_async(self) -> int:
        return int(await self._call(lambda r: r.get(self._version_key)) or 0)

    def _load(self, pipe: Any) -> Any:
        pipe.get(self._version_key)
        for kind in KINDS:
            pipe.hgetall(self._keys[kind])
        return pipe.execute()

    def revocations(self) -> Revocations:
        return _revocations(self._call_sync(lambda r: self._load(r.pipeline(transaction=True))))

    async def revocations_async(self) -> Revocations:
        raw = await self._call(lambda r: self._load(r.pipeline(transaction=True)))
        return _revocations(raw)

    # -- counters and single-use ids -------------------------------------------------------------

    def _hit_args(self, rules: Sequence[Rule]) -> tuple[list[str], list[int]]:
        keys = [f"{self.prefix}q:{rule.key}" for rule in rules]
        args: list[int] = []
        for rule in rules:
            args += [rule.limit, round(rule.period * 1_000_000)]
        return keys, args

    def hit(self, rules: Sequence[Rule]) -> tuple[bool, float]:
        keys, args = self._hit_args(rules)
        raw = self._call_sync(lambda r: r.eval(_HIT, len(keys), *keys, *args))
        return _decision(raw)

    async def hit_async(self, rules: Sequence[Rule]) -> tuple[bool, float]:
        keys, args = self._hit_args(rules)
        raw = await self._call(lambda r: r.eval(_HIT, len(keys), *keys, *args))
        return _decision(raw)

    def _claim_args(self, key: str, until: float) -> tuple[str, int]:
        return f"{self.prefix}once:{key}", max(1000, math.ceil((until - time.time()) * 1000))

    def claim(self, key: str, until: float) -> bool:
        name, ms = self._claim_args(key, until)
        return bool(self._call_sync(lambda r: r.set(name, b"1", nx=True, px=ms)))

    async def claim_async(self, key: str, until: float) -> bool:
        name, ms = self._claim_args(key, until)
        return bool(await self._call(lambda r: r.set(name, b"1", nx=True, px=ms)))

    # -- events (Redis pub/sub: every process on every host) -------------------------------------

    async def publish(self, channel: str, data: bytes) -> None:
        name = f"{self.prefix}ev:{check_channel(channel)}"
        await self._call(lambda r: r.publish(name, data))

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._subscribe(f"{self.prefix}ev:{check_channel(channel)}")

    @asynccontextmanager
    async def _subscribe(self, name: str) -> AsyncIterator[AsyncIterator[bytes]]:
        pubsub = (await self._client()).pubsub()
        try:
            await self._call(lambda _: pubsub.subscribe(name))
            yield self._listen(pubsub)
        finally:
            try:
                async with asyncio.timeout(self.timeout):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            except Exception:  # noqa: S110  (closing a dead connection cannot fail louder)
                pass

    async def _listen(self, pubsub: Any) -> AsyncIterator[bytes]:
        from redis.exceptions import RedisError

        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError) as exc:
                raise self._unreachable(exc) from None
            if message is not None and message.get("type") == "message":
                yield bytes(message["data"])

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close both clients. The asyncio one is closed on the loop it was made in: this
        loop, or another thread's loop that still runs (a closed loop's shutdown has
        already closed it, see ``_client``)."""
        self.close()
        guard, loop = self._guard, self._loop
        self._async = self._loop = self._guard = None
        if guard is None or loop is None:
            return
        if loop is asyncio.get_running_loop():
            await guard.aclose()
        elif loop.is_running():
            done = asyncio.run_coroutine_threadsafe(_finish(guard), loop)
            try:
                async with asyncio.timeout(self.timeout):
                    await asyncio.wrap_future(done)
            except TimeoutError:
                done.cancel()


async def _close_with_loop(client: async_redis.Redis, timeout: float) -> AsyncGenerator[None, None]:
    """Closes ``client`` when finalised: by ``RedisStore.aclose`` or, when that was never
    called, by the loop's ``shutdown_asyncgens()`` before the loop closes."""
    from redis.exceptions import RedisError

    try:
        yield
    finally:
        # A dead connection is closed all the same: its error says nothing new.
        with suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(timeout):
                await client.aclose()


async def _finish(guard: AsyncGenerator[None, None]) -> None:
    await guard.aclose()


def _decision(raw: Any) -> tuple[bool, float]:
    return bool(int(raw[0])), int(raw[1]) / 1_000_000


def _revocations(raw: Any) -> Revocations:
    version, *tables = raw

    def parse(table: dict[bytes, bytes]) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in table.items()}

    kid, jti, sub = (parse(table) for table in tables)
    return Revocations(version=int(version or 0), kids=frozenset(kid), jtis=jti, subjects=sub)
