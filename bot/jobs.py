"""A bounded job queue and tracked workers: events are answered at once, work runs here.

In memory for now, behind a small interface; a durable queue replaces it in a later issue.
A full queue refuses new work instead of holding it in unbounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import structlog

from bot.models import IncomingCommand

log = structlog.get_logger(__name__)

Worker = Callable[[IncomingCommand], Awaitable[None]]


class JobQueue:
    """Accepts all of an event's commands or none of them."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[IncomingCommand] = asyncio.Queue(maxsize)
        self.accepting = True

    def offer(self, jobs: Sequence[IncomingCommand]) -> bool:
        free = self._queue.maxsize - self._queue.qsize()
        if not self.accepting or len(jobs) > free:
            return False
        for job in jobs:
            self._queue.put_nowait(job)
        return True

    def size(self) -> int:
        return self._queue.qsize()

    async def take(self) -> IncomingCommand:
        return await self._queue.get()

    def done(self) -> None:
        self._queue.task_done()

    async def drained(self) -> None:
        """Wait until every job taken so far is done and the queue is empty."""
        await self._queue.join()


class Workers:
    """A fixed number of tracked tasks taking jobs from the queue; drained on stop."""

    def __init__(self, queue: JobQueue, work: Worker, *, count: int) -> None:
        self._queue = queue
        self._work = work
        self._tasks = [asyncio.create_task(self._run(), name=f"worker-{n}") for n in range(count)]

    async def _run(self) -> None:
        while True:
            job = await self._queue.take()
            try:
                await self._work(job)
            except Exception:  # the work maps its own errors; this is the last guard
                log.exception("job.crashed", key=job.key)
            finally:
                self._queue.done()

    async def stop(self, grace: float) -> None:
        """Refuse new jobs, let queued and running ones finish within `grace` s, then cancel."""
        self._queue.accepting = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.drained(), grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._queue.size():
            log.warning("jobs.dropped_on_shutdown", count=self._queue.size())
