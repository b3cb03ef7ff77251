"""Group commit: concurrent commands share Raft log entries.

Each Raft entry costs the same fixed work (pickle, encrypt, send, journal, one SQLite
transaction) whatever it holds, so under load the store packs the commands waiting at
that moment into one `{"op": "batch", "commands": [...]}` entry, applied in one
transaction with one result per command (see `statemachine.apply`). At most
`max_inflight` entries are in flight; commands arriving meanwhile wait and leave
together with the next entry. A lone command goes alone, unwrapped: no added latency.

Retrying a batch resends the same commands with the same ids, so each applies once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cluster.metadata import statemachine
from common.errors import GitraftError

# (payload, what, seconds) -> the entry's result, or raises UnavailableError.
Commit = Callable[[bytes, str, float], Awaitable[Any]]


@dataclass
class _Waiting:
    command: dict[str, Any]
    future: asyncio.Future[Any]
    deadline: float


class CommandBatcher:
    def __init__(self, commit: Commit, timeout: float, max_batch: int = 256, max_inflight: int = 4) -> None:
        self._commit = commit
        self._timeout = timeout
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._queue: list[_Waiting] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False

    async def submit(self, command: dict[str, Any]) -> Any:
        """Commit `command` (alone or with others); its own result, or the entry's error."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(command, loop.create_future(), loop.time() + self._timeout)
        self._queue.append(waiting)
        if not self._flush_scheduled:
            # After the current loop iteration: commands submitted together leave together.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await waiting.future

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._queue and len(self._inflight) < self._max_inflight:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._inflight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self._queue:
            self._flush()

    async def _send(self, batch: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        if len(batch) == 1:
            payload = statemachine.encode(batch[0].command)
            what = str(batch[0].command.get("op"))
        else:
            payload = statemachine.encode({"op": "batch", "commands": [w.command for w in batch]})
            what = f"batch of {len(batch)}"
        try:
            result = await self._commit(payload, what, min(w.deadline for w in batch) - loop.time())
        except GitraftError as exc:
            for w in batch:
                _settle(w.future, exc)
            return
        except BaseException as exc:  # cancelled at shutdown: nobody must hang
            for w in batch:
                _settle(w.future, exc if isinstance(exc, Exception) else asyncio.CancelledError())
            raise
        results = [result] if len(batch) == 1 else result
        if not isinstance(results, list) or len(results) != len(batch):
            results = [result] * len(batch)  # the entry as a whole failed (an error value)
        for w, r in zip(batch, results, strict=True):
            _settle(w.future, r)


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if future.done():
        return
    if isinstance(value, asyncio.CancelledError):
        future.cancel()
    elif isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)
