"""SharedBarrier: concurrent readers share barriers, and none reuses one begun before it."""

from __future__ import annotations

import asyncio

import pytest

from cluster.proxy.barrier import SharedBarrier


class FakeBarrier:
    def __init__(self) -> None:
        self.started = 0
        self.gates: list[asyncio.Future[None]] = []

    async def __call__(self) -> None:
        self.started += 1
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        await gate


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_readers_arriving_during_a_barrier_share_the_next_one() -> None:
    fake = FakeBarrier()
    shared = SharedBarrier(fake)
    first = asyncio.create_task(shared.wait())
    await settle()
    late = [asyncio.create_task(shared.wait()) for _ in range(10)]
    await settle()
    assert fake.started == 1
    fake.gates[0].set_result(None)
    await settle()
    assert first.done() and not any(t.done() for t in late)
    assert fake.started == 2
    fake.gates[1].set_result(None)
    await asyncio.gather(*late)
    assert fake.started == 2


async def test_errors_reach_every_waiter() -> None:
    fake = FakeBarrier()
    shared = SharedBarrier(fake)
    first = asyncio.create_task(shared.wait())
    await settle()
    late = asyncio.create_task(shared.wait())
    await settle()
    fake.gates[0].set_exception(RuntimeError("no quorum"))
    await settle()
    with pytest.raises(RuntimeError):
        await first
    fake.gates[1].set_exception(RuntimeError("still none"))
    with pytest.raises(RuntimeError, match="still none"):
        await late
