"""cluster.background.periodic.run_periodically: rounds, stop, wake, the leader gate, failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from cluster.background.periodic import run_periodically
from common.errors import UnavailableError

BOUND = 5.0  # seconds any expected event may take; a hang fails the test instead


def counting_round(
    fail: dict[int, Exception] | None = None,
) -> tuple[Callable[[], Awaitable[None]], asyncio.Queue[int]]:
    """A round that puts its call number on a queue (and raises `fail[n]` on call n)."""
    done: asyncio.Queue[int] = asyncio.Queue()
    count = 0

    async def round_() -> None:
        nonlocal count
        count += 1
        done.put_nowait(count)
        if fail and count in fail:
            raise fail[count]

    return round_, done


async def next_round(done: asyncio.Queue[int]) -> int:
    async with asyncio.timeout(BOUND):
        return await done.get()


async def test_rounds_repeat_until_stop_and_failures_do_not_end_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "cluster.background.periodic")
    stop = asyncio.Event()
    round_, done = counting_round({1: UnavailableError("no quorum"), 2: RuntimeError("a bug")})
    task = asyncio.create_task(run_periodically("t", round_, stop, 0.001))
    assert [await next_round(done) for _ in range(4)] == [1, 2, 3, 4]
    stop.set()
    async with asyncio.timeout(BOUND):
        await task
    settled = done.qsize()
    await asyncio.sleep(0.01)
    assert done.qsize() == settled  # no round after stop
    assert "t round failed" in caplog.text and "t round crashed" in caplog.text


async def test_stop_ends_a_long_wait_at_once() -> None:
    stop = asyncio.Event()
    round_, done = counting_round()
    task = asyncio.create_task(run_periodically("t", round_, stop, 3600))
    assert await next_round(done) == 1
    stop.set()
    async with asyncio.timeout(BOUND):  # would wait an hour otherwise
        await task
    assert done.empty()


async def test_wake_starts_the_next_round_at_once() -> None:
    stop, wake = asyncio.Event(), asyncio.Event()
    round_, done = counting_round()
    task = asyncio.create_task(run_periodically("t", round_, stop, 3600, wake=wake))
    try:
        assert await next_round(done) == 1
        wake.set()
        assert await next_round(done) == 2
        assert not wake.is_set()
    finally:
        stop.set()
        async with asyncio.timeout(BOUND):
            await task


async def test_leader_only_rounds_run_only_while_leading() -> None:
    stop = asyncio.Event()
    leading = False
    asked: asyncio.Queue[bool] = asyncio.Queue()

    def is_leader() -> bool:
        asked.put_nowait(leading)
        return leading

    round_, done = counting_round()
    task = asyncio.create_task(run_periodically("t", round_, stop, 0.001, leader_only=is_leader))
    try:
        for _ in range(5):
            async with asyncio.timeout(BOUND):
                assert await asked.get() is False
        assert done.empty()
        leading = True
        assert await next_round(done) == 1
    finally:
        stop.set()
        async with asyncio.timeout(BOUND):
            await task


@pytest.mark.parametrize(("fixed_rate", "expected"), [(True, 3.0), (False, 10.0)])
async def test_fixed_rate_counts_the_round_in_the_interval(
    fixed_rate: bool, expected: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an injected clock: a round that 'took' 7 s of a 10 s interval leaves a 3 s
    wait; without fixed_rate the wait is the whole interval."""
    stop = asyncio.Event()
    now = [100.0]
    waits: list[float] = []
    real_wait_for = asyncio.wait_for

    async def round_() -> None:
        now[0] += 7.0

    async def recording_wait_for(aw: Awaitable[object], timeout: float) -> object:  # noqa: ASYNC109
        waits.append(timeout)
        stop.set()
        return await real_wait_for(aw, 0)

    monkeypatch.setattr("cluster.background.periodic.asyncio.wait_for", recording_wait_for)
    await run_periodically("t", round_, stop, 10.0, fixed_rate=fixed_rate, clock=lambda: now[0])
    assert waits == [expected]
