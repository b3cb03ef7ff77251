"""RaftMetadataStore's boundary over the real state machine (LocalStore: no Raft):
arguments it puts in commands, results and errors it maps back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cluster.metadata.api import HealthVote, JobState
from common.errors import FailedPreconditionError
from tests.unit.test_router_coordinator import NOW, LocalStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    s = LocalStore(tmp_path / "raft")
    await s.start()
    for name in ("a", "b", "c"):
        await s.register_storage(name, f"127.0.0.1:{name}")
    await s.create_repository("r1", "g/r.git", "@cluster/r1.git", ["a", "b", "c"], "a", 3, NOW)
    await s.begin_write("i1", "r1", ["a"], "p1", NOW + 10)
    await s.finish_write("i1", ["a"], [], NOW)  # a at 0; update jobs for b and c
    try:
        yield s
    finally:
        await s.stop()


async def test_set_primary_to_an_outdated_replica_is_a_failed_precondition(store: LocalStore) -> None:
    with pytest.raises(FailedPreconditionError, match="outdated"):
        await store.set_primary("r1", "b", NOW)
    with pytest.raises(FailedPreconditionError, match="not assigned"):
        await store.set_primary("r1", "zzz", NOW)
    repo = await store.get_repository_by_id("r1")
    assert repo is not None and repo.primary == "a"


async def test_complete_job_says_false_for_a_removed_repository(store: LocalStore) -> None:
    job_b, job_c = await store.lease_jobs("w1", NOW, 30.0, 10)
    assert await store.complete_job(job_b.id, "w1", NOW + 1) is True
    await store.remove_repository("r1", NOW + 2)
    assert await store.complete_job(job_c.id, "w1", NOW + 3) is False
    assert await store.get_repository_by_id("r1") is None
    ended = [j for j in await store.list_jobs([JobState.COMPLETED], 10) if j.id == job_c.id]
    assert [j.last_error for j in ended] == ["repository removed"]


async def test_lease_jobs_passes_the_healthy_storages(store: LocalStore) -> None:
    assert await store.lease_jobs("w1", NOW, 30.0, 10, healthy={"a", "c"}) != []
    (leased,) = await store.list_jobs([JobState.IN_PROGRESS], 10)
    assert leased.target == "c"
    assert await store.lease_jobs("w1", NOW, 30.0, 10, healthy={"b", "c"}) == []  # source a down
    (job,) = await store.lease_jobs("w1", NOW, 30.0, 10)
    assert job.target == "b"


async def test_health_votes_of_every_proxy(store: LocalStore) -> None:
    await store.record_health("p1", "a", True, NOW)
    await store.record_health("p2", "a", False, NOW + 1)
    assert await store.health_votes() == {
        "p1": {"a": HealthVote(True, NOW)},
        "p2": {"a": HealthVote(False, NOW + 1)},
    }


async def test_replication_factor_is_what_was_asked_not_the_replica_count(store: LocalStore) -> None:
    """One truth: the stored factor is the replicas wanted. A re-assignment (the
    reconciler: one in, one out) keeps it, even while fewer replicas exist than wanted;
    an operator's change sets it."""
    await store.register_storage("d", "127.0.0.1:d")
    await store.create_repository("r2", "g/few.git", "@cluster/r2.git", ["a", "b"], "a", 3, NOW)
    moved = await store.set_replication_factor("r2", ["c"], ["b"], NOW + 1)
    assert [r.storage for r in moved.replicas] == ["a", "c"] and moved.replication_factor == 3
    fewer = await store.set_replication_factor("r1", [], ["c"], NOW + 2, replication_factor=2)
    assert len(fewer.replicas) == 2 and fewer.replication_factor == 2
    asked = await store.set_replication_factor("r2", [], [], NOW + 3, replication_factor=2)
    assert asked.replication_factor == 2 and len(asked.replicas) == 2
