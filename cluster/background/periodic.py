"""The proxy's background loops (elector, health, replicator, intent repair, ...) share
one shape, written once here: run a round, survive its failure, wait, repeat until told
to stop.

Contract of `run_periodically`:
- a round runs, then the loop waits `interval` seconds, measured from the round's start
  (`fixed_rate=True`, a round that overran is followed at once) or from its end;
- the wait ends early when `stop` is set (the loop then returns without another round)
  or when `wake` is set (the next round starts at once; `wake` is cleared first);
- with `leader_only`, a round runs only while it returns True (the Raft leader's
  duties); the loop keeps ticking so it takes over as soon as this proxy leads;
- a round that raises a `GitraftError` (an expected failure: no quorum, a node away) is
  logged at info; any other exception is logged with its traceback. Neither ends the
  loop: a bug must not silence a background duty for the life of the process.
  Cancellation (`CancelledError`) is not caught.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from common.errors import GitraftError

log = logging.getLogger(__name__)


async def run_periodically(
    name: str,
    round_: Callable[[], Awaitable[Any]],
    stop: asyncio.Event,
    interval: float,
    *,
    leader_only: Callable[[], bool] | None = None,
    wake: asyncio.Event | None = None,
    fixed_rate: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run `round_` every `interval` seconds until `stop` is set (see the module doc)."""
    while not stop.is_set():
        started = clock()
        if leader_only is None or leader_only():
            try:
                await round_()
            except GitraftError as exc:
                log.info("%s round failed", name, extra={"error": str(exc)})
            except Exception:  # a bug must not end the loop for the life of the process
                log.exception("%s round crashed", name)
        delay = max(0.0, interval - (clock() - started)) if fixed_rate else interval
        await _wait(stop, wake, delay)


async def _wait(stop: asyncio.Event, wake: asyncio.Event | None, delay: float) -> None:
    """Until `stop` or `wake` is set, or `delay` seconds pass; clears `wake`."""
    events = [stop] if wake is None else [stop, wake]
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED), delay)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    if wake is not None:
        wake.clear()
