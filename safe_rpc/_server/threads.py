"""The bounded pool that runs sync handlers off the event loop.

Why not ``asyncio.to_thread``: the default executor is shared with everything else in the
process, is sized by the CPU count (6 threads here, so 6 handlers that block starve every
other sync call), queues work without bound, and costs a ``concurrent.futures`` future, a
wrapper future and an executor lock per call. This pool:

* holds at most ``max_threads`` threads; when every one is held (by a running handler, or by
  one that ran past its deadline and is still going: a thread cannot be killed), a new job is
  refused at once and the caller answers -32009, instead of queueing towards a timeout;
* hands a job over with one ``SimpleQueue.put`` (C, lock-free for the producer) and hands
  the answer back with one ``call_soon_threadsafe`` per job;
* runs the sync calls of a whole batch as ONE job: the first thread to take it works through
  the calls in order. If the job is still running a moment later (its calls block), the
  driver widens it: more threads take the same job and claim the next unstarted call. Fast
  calls therefore cost one hop for the whole batch; calls that block run concurrently.

Threads are daemons started on demand and retire after ``_IDLE_SECONDS`` without work, so a
server that never runs a sync handler under ``dispatch_async`` owns no thread, and a handler
that never returns does not keep the process from exiting (the transports drain in-flight
calls before shutting down; the default executor would have joined such a thread forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

__all__ = ["Job", "ThreadPool"]

_IDLE_SECONDS: Final = 10.0


class _Raised:
    """What a call that raised leaves in its result slot."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Job:
    """Sync calls handed to the pool together; results land in ``results`` by index.

    ``results[i]`` is ``NOT_RUN`` until call ``i`` returned; a call that raised leaves a
    ``_Raised``. After ``abandon()`` (the deadline passed) no further call starts.
    """

    __slots__ = ("_claimed", "_context", "_left", "_lock", "abandoned", "calls", "done", "results")

    def __init__(
        self, calls: Sequence[tuple[Callable[..., Any], list[Any], dict[str, Any]]]
    ) -> None:
        self.calls = calls
        self.results: list[Any] = [NOT_RUN] * len(calls)
        self.abandoned = False
        self.done: asyncio.Future[None] | None = None
        self._claimed = 0
        self._left = len(calls)
        self._lock = threading.Lock()
        # Like asyncio.to_thread: handlers see the caller's context variables.
        self._context = contextvars.copy_context()

    def abandon(self) -> None:
        self.abandoned = True

    def _claim(self) -> int | None:
        with self._lock:
            if self.abandoned or self._claimed >= len(self.calls):
                return None
            index = self._claimed
            self._claimed += 1
            return index

    def _work(self) -> bool:
        """Run calls until none is left; True when this thread finished the last one."""
        last = False
        while (index := self._claim()) is not None:
            func, args, kwargs = self.calls[index]
            try:
                # A copy per call: one Context cannot be entered by two threads at once.
                self.results[index] = self._context.copy().run(func, *args, **kwargs)
            except BaseException as exc:  # handed to the driver, which maps it
                self.results[index] = _Raised(exc)
            with self._lock:
                self._left -= 1
                last = self._left == 0
        return last

    def unclaimed(self) -> int:
        return 0 if self.abandoned else len(self.calls) - self._claimed


class _NotRun:
    __slots__ = ()


NOT_RUN: Final = _NotRun()


def raised(value: Any) -> BaseException | None:
    """The exception a call raised, if ``value`` is the slot of a call that raised."""
    return value.exc if type(value) is _Raised else None


class ThreadPool:
    """At most ``max_threads`` threads running sync handler calls for one server."""

    def __init__(self, max_threads: int) -> None:
        self.max_threads = max_threads
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0  # alive
        self._idle = 0  # alive, waiting, and not already promised to a queued job
        self._held = 0  # queued or running job hand-overs

    @property
    def held(self) -> int:
        """Threads held by a job right now (running, or about to)."""
        return self._held

    def submit(self, job: Job) -> asyncio.Future[None] | None:
        """Queue ``job`` on one thread; None when every thread is held.

        The returned future completes on the calling loop once every call of the job has
        returned (an abandoned job never completes: its driver stopped waiting).
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._held >= self.max_threads:
                return None
            job.done = loop.create_future()
            self._hand_over(job)
        return job.done

    def widen(self, job: Job, extra: int) -> None:
        """Let up to ``extra`` more threads take calls of ``job`` (as threads are free).

        The driver calls this only when a job is still running after a short delay: its
        calls block, so they should not wait for each other. Never refuses anything.
        """
        with self._lock:
            for _ in range(min(extra, job.unclaimed(), self.max_threads - self._held)):
                self._hand_over(job)

    def _hand_over(self, job: Job) -> None:
        # Called with the lock held. The put happens under the lock, so a retiring thread
        # never finds the queue empty while a job is promised to it (see _worker).
        self._held += 1
        if self._idle:
            self._idle -= 1
        else:
            self._threads += 1
            thread = threading.Thread(target=self._worker, name="safe_rpc-handler", daemon=True)
            thread.start()
        self._jobs.put(job)

    def _worker(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            finished = job._work()
            with self._lock:
                self._held -= 1
                self._idle += 1
            if finished:
                _deliver(job)


def _deliver(job: Job) -> None:
    done = job.done
    if done is None:
        return
    # RuntimeError: the loop closed while a handler past its deadline still ran.
    with contextlib.suppress(RuntimeError):
        done.get_loop().call_soon_threadsafe(_complete, done)


def _complete(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
