"""One Raft read barrier shared among concurrent readers.

A reader needs a barrier that *began after its read began*: one already in flight may
have started too early. So a reader arriving while a barrier runs waits for the next
one, which starts as soon as the current one ends and serves every reader that arrived
meanwhile. Under load this costs at most two barriers per read and one barrier per
batch of reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class SharedBarrier:
    """Wraps `barrier()` (e.g. MetadataStore.barrier) so concurrent callers share calls."""

    def __init__(self, barrier: Callable[[], Awaitable[None]]) -> None:
        self._barrier = barrier
        self._running: asyncio.Future[None] | None = None
        self._next: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        """Return once a barrier that began after this call has completed (or raise its error)."""
        if self._running is None:
            self._running = self._start()
            await asyncio.shield(self._running)
            return
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._next)

    def _start(self) -> asyncio.Future[None]:
        task = asyncio.ensure_future(self._barrier())
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[None]) -> None:
        self._running = None
        if not task.cancelled():
            task.exception()  # retrieved: each waiter sees it through its own await
        waiting, self._next = self._next, None
        if waiting is None:
            return
        self._running = self._start()
        _chain(self._running, waiting)


def _chain(source: asyncio.Future[None], target: asyncio.Future[None]) -> None:
    def copy(done: asyncio.Future[None]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif done.exception() is not None:
            target.set_exception(done.exception())  # type: ignore[arg-type]
            target.exception()  # retrieved: the waiters re-raise it
        else:
            target.set_result(None)

    source.add_done_callback(copy)
