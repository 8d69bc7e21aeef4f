"""The asyncio driver of ``ConnectionCore``: tasks that read, write, keep time and run the
work the core asks for. ``tcp.py`` and ``websocket.py`` subclass it with the few lines
that move bytes on their kind of connection.

Three loops per connection, all woken by one event after every change of the core:

* the reader reads one message while the core wants input (stopped at the in-flight cap
  and while answers are not drained: back-pressure);
* the writer writes the core's outbox one message at a time and reports when each one
  drained (the core aborts the connection when that takes longer than ``write_timeout``);
* the timer calls ``timer_fired`` at the core's next deadline (authenticate, idle, write);
* a watcher ends everything as soon as the transport is lost, even while reading is paused.

Each ``Dispatch`` runs in its own task under ``RPCServer.dispatch_async`` with the session
in a context variable; each subscription runs in its own task. When the connection ends,
every task of it is cancelled: work for a connection that is gone is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.context import EVENT_SOURCE
from .._core.errors import RPCError
from .actions import Abort, Action, Close, Dispatch, StartStream, StopStream
from .connection import SESSION, ConnectionCore

if TYPE_CHECKING:
    from .._server.server import RPCServer

__all__ = ["ConnectionDriver", "hard_abort"]

logger = logging.getLogger("safe_rpc.connection")

#: Queued messages written together, up to this many bytes: many small subscription items
#: cost one system call instead of one each.
_WRITE_BATCH = 64 * 1024
#: Items a subscription may produce between turns of the event loop (at most a quarter of
#: subscription_queue, so a consumer that keeps up never looks slow).
_YIELD_EVERY = 8


def hard_abort(transport: asyncio.WriteTransport) -> None:
    """Cut a connection now and drop what the kernel still holds for it.

    ``transport.abort()`` drops asyncio's buffer, but the kernel would keep trying to
    deliver its own send buffer (megabytes) to a peer that does not read; a zero linger
    time makes the close a reset that frees it at once (RFC 9293 section 3.10.7.1, ABORT).
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class ConnectionDriver:
    """Runs one connection; subclasses implement ``_receive``, ``_send``, ``_abort_transport``
    and ``_close_transport``."""

    #: reported to handlers as ``Context.transport``
    transport_name = "tcp"
    #: True when end of input means the peer is gone (WebSocket): drop in-flight work.
    eof_is_gone = False

    def __init__(self, rpc: RPCServer, core: ConnectionCore) -> None:
        self.rpc = rpc
        self.core = core
        self.loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        # The timer sleeps until its deadline and is woken only by a change that brings a
        # deadline earlier (not by every message: that would cost a task switch each).
        self._timer_wake = asyncio.Event()
        self._timer_at: float | None = None
        self._done = asyncio.Event()
        self._work: set[asyncio.Task[None]] = set()
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._holding = False  # a delayed close holds the writer back

    # -- to implement -----------------------------------------------------------------------

    async def _receive(self) -> bytes | None:
        """The next whole message, or None at the end of input."""
        raise NotImplementedError

    async def _send(self, data: bytes) -> None:
        """Write one message and return once it drained."""
        raise NotImplementedError

    async def _send_many(self, batch: list[bytes]) -> None:
        """Write several messages (transports that can, in one system call)."""
        for data in batch:
            await self._send(data)

    def _abort_transport(self) -> None:
        raise NotImplementedError

    async def _close_transport(self, code: int) -> None:
        raise NotImplementedError

    async def _watch(self) -> None:
        """Return when the connection is gone (a subclass that can tell overrides this)."""

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        self._reader = asyncio.create_task(self._read_loop())
        loops = [self._reader, asyncio.create_task(self._write_loop())]
        loops.append(asyncio.create_task(self._timer_loop()))
        loops.append(asyncio.create_task(self._watch()))
        try:
            await self._done.wait()
        finally:
            for task in [*loops, *self._work, *self._streams.values()]:
                task.cancel()
            await asyncio.gather(
                *loops, *self._work, *self._streams.values(), return_exceptions=True
            )
            if not self.core.finished:
                self.core.gone()

    def _now(self) -> float:
        return self.loop.time()

    def _apply(self) -> None:
        for action in self.core.take_actions():
            self._carry_out(action)
        self._changed.set()
        self._check_timer()

    def _check_timer(self) -> None:
        deadline = self.core.deadline()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            self._timer_wake.set()

    def _carry_out(self, action: Action) -> None:
        if isinstance(action, Dispatch):
            self._spawn(self._dispatch(action))
        elif isinstance(action, StartStream):
            task = asyncio.create_task(self._stream(action))
            self._streams[action.stream_id] = task
        elif isinstance(action, StopStream):
            stopped = self._streams.pop(action.stream_id, None)
            if stopped is not None and stopped is not asyncio.current_task():
                stopped.cancel()
        elif isinstance(action, Close):
            if self._reader is not None and self._reader is not asyncio.current_task():
                self._reader.cancel()
            self._spawn(self._closing(action))
        elif isinstance(action, Abort):
            self._abort_transport()
            self._done.set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            self._changed.clear()
            await self._changed.wait()

    # -- the loops ------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        core = self.core
        try:
            while True:
                await self._until(lambda: core.wants_input or core.closing is not None)
                if core.closing is not None or core.finished:
                    return
                message = await self._receive()
                if message is None:
                    break
                core.message_received(message, self._now())
                self._apply()
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            logger.debug("connection from %s ended: %s", core.peer, type(exc).__name__)
            self.eof_is_gone = True
        if self.eof_is_gone:
            core.gone()
            self._done.set()
        else:
            core.eof(self._now())
            self._apply()

    async def _write_loop(self) -> None:
        core = self.core
        while True:
            await self._until(lambda: core.has_output and not self._holding)
            batch = core.next_writes(self._now(), _WRITE_BATCH)
            if not batch:
                continue
            self._check_timer()  # the write deadline starts now
            try:
                await self._send_many(batch)
            except (ConnectionError, OSError, RuntimeError) as exc:
                logger.debug("write to %s failed: %s", core.peer, type(exc).__name__)
                core.gone()
                self._done.set()
                return
            core.write_done(self._now())
            self._apply()

    async def _timer_loop(self) -> None:
        core = self.core
        while True:
            self._timer_at = deadline = core.deadline()
            self._timer_wake.clear()
            if deadline is None:
                await self._timer_wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - self._now())):
                    await self._timer_wake.wait()
            if self._now() >= deadline:
                core.timer_fired(self._now())  # it re-checks: the deadline may have moved
                self._apply()

    async def _closing(self, close: Close) -> None:
        if close.delay:
            self._holding = True
            await asyncio.sleep(close.delay)
            self._holding = False
            self._changed.set()
        core = self.core
        await self._until(lambda: not core.pending or core.finished)
        if not core.finished:
            with contextlib.suppress(Exception):
                await self._close_transport(close.code)
        core.gone()
        self._done.set()

    # -- the work -------------------------------------------------------------------------------

    async def _dispatch(self, action: Dispatch) -> None:
        SESSION.set(action.session)  # this task's own context: seen by the starter only
        answer = await self.rpc.dispatch_async(
            action.data,
            principal=action.principal,
            transport=self.transport_name,
            client=self.core.peer,
        )
        self.core.answer_ready(action.key, answer, self._now())
        self._apply()

    async def _stream(self, action: StartStream) -> None:
        EVENT_SOURCE.set(self.rpc.event_source)
        core = self.core
        error: BaseException | None = None
        generator = action.spec.func(*action.args, **action.kwargs)
        try:
            produced = 0
            every = max(1, min(_YIELD_EVERY, self.rpc.limits.subscription_queue // 4))
            async for item in generator:
                core.item_ready(action.stream_id, item, self._now())
                self._apply()
                produced += 1
                if produced % every == 0:
                    # A generator that never awaits must not hog the loop; a few items
                    # between turns let the writer send them in one system call.
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except RPCError as exc:
            error = exc
        except Exception as exc:
            error = exc
        finally:
            with contextlib.suppress(Exception):
                await generator.aclose()
        self._streams.pop(action.stream_id, None)
        core.stream_ended(action.stream_id, error, self._now())
        self._apply()
