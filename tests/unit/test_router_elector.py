"""The primary elector: moves a primary only to a healthy, up-to-date replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cluster.background.elector import Elector, choose_primary
from cluster.metadata.api import Replica, Repository
from tests.unit.helpers import local_store
from tests.unit.test_router_coordinator import NOW, LocalStore


def repo(primary: str, **generations: int) -> Repository:
    replicas = tuple(Replica(s, g) for s, g in sorted(generations.items()))
    return Repository("r", "p.git", "@cluster/r.git", primary, 3, 0.0, replicas)


def test_a_healthy_current_primary_stays() -> None:
    assert choose_primary(repo("a", a=2, b=2), {"a", "b"}, {}) == "a"


def test_an_unhealthy_or_outdated_primary_moves_to_the_least_leading_current_replica() -> None:
    assert choose_primary(repo("a", a=2, b=2, c=2), {"b", "c"}, {"b": 5, "c": 1}) == "c"
    assert choose_primary(repo("a", a=1, b=2, c=2), {"a", "b", "c"}, {}) == "b"


def test_never_to_an_outdated_replica() -> None:
    assert choose_primary(repo("a", a=3, b=2, c=2), {"b", "c"}, {}) is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    async with local_store(
        tmp_path / "raft", address=lambda name: f"127.0.0.1:{name}", healthy=lambda name: name != "a"
    ) as s:
        await s.create_repository("r1", "g/r.git", "@cluster/r1.git", ["a", "b", "c"], "a", 3, NOW)
        yield s


async def test_the_leader_fails_over_and_followers_do_nothing(store: LocalStore) -> None:
    for storage, generation in (("a", 4), ("b", 4), ("c", 3)):
        await store.set_generation("r1", storage, generation, NOW)
    store.leader = False
    assert await Elector(store, clock=lambda: NOW).round() == []
    store.leader = True
    moved = await Elector(store, clock=lambda: NOW).round()
    assert [(m.old_primary, m.new_primary) for m in moved] == [("a", "b")]
    fresh = await store.get_repository("g/r.git")
    assert fresh is not None and fresh.primary == "b"
    assert await Elector(store, clock=lambda: NOW).round() == []


async def test_no_current_healthy_replica_leaves_the_primary(store: LocalStore) -> None:
    for storage, generation in (("a", 4), ("b", 3), ("c", 3)):
        await store.set_generation("r1", storage, generation, NOW)
    assert await Elector(store, clock=lambda: NOW).round() == []
    fresh = await store.get_repository("g/r.git")
    assert fresh is not None and fresh.primary == "a"


async def test_a_move_refused_at_apply_skips_that_repository_only(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.create_repository("r2", "g/s.git", "@cluster/r2.git", ["a", "b", "c"], "a", 3, NOW)
    for rid in ("r1", "r2"):
        for storage in "abc":
            await store.set_generation(rid, storage, 4, NOW)
    real = store.set_primary

    async def after_a_write_on_the_old_primary(rid: str, storage: str, now: float) -> Repository:
        if rid == "r1":  # a write landed on a after the round read r1: b is now outdated
            await store.set_generation("r1", "a", 5, NOW)
        return await real(rid, storage, now)

    monkeypatch.setattr(store, "set_primary", after_a_write_on_the_old_primary)
    moved = await Elector(store, clock=lambda: NOW).round()
    # The round planned r1 for b, so r2 went to the then least-leading current replica, c.
    assert [(m.repository, m.new_primary) for m in moved] == [("g/s.git", "c")]
    r1 = await store.get_repository("g/r.git")
    assert r1 is not None and r1.primary == "a"


async def test_a_round_sends_its_moves_concurrently_and_balances_them(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(2, 41):
        await store.create_repository(
            f"r{i}", f"g/{i}.git", f"@cluster/r{i}.git", ["a", "b", "c"], "a", 3, NOW
        )
    for i in range(1, 41):
        for storage in "abc":
            await store.set_generation(f"r{i}", storage, 1, NOW)
    real = store.set_primary
    running: list[int] = [0, 0]  # now, most at once

    async def slow(rid: str, storage: str, now: float) -> Repository:
        running[0] += 1
        running[1] = max(running)
        await asyncio.sleep(0.01)
        running[0] -= 1
        return await real(rid, storage, now)

    monkeypatch.setattr(store, "set_primary", slow)
    moved = await Elector(store, clock=lambda: NOW, concurrency=8).round()
    assert len(moved) == 40 and running[1] == 8
    assert sorted(m.new_primary for m in moved).count("b") == 20
    for i in range(1, 41):
        fresh = await store.get_repository("g/r.git" if i == 1 else f"g/{i}.git")
        assert fresh is not None and fresh.primary in ("b", "c")
