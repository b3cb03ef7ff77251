"""Which jobs a replication worker tries to lease, its backoff, and what it does (or
refuses to do) on the nodes for a leased job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cluster.background.replicator import Replicator, backoff_seconds, leasable, runnable
from cluster.metadata.api import ChangeType, Job, JobState
from cluster.observability.metrics import ProxyMetrics
from cluster.proxy.nodes import NodePool
from common.errors import FailedPreconditionError
from tests.unit.helpers import local_store
from tests.unit.test_router_coordinator import NOW as CLOCK
from tests.unit.test_router_coordinator import LocalStore

NOW = 1000.0


def job(state: JobState, change: ChangeType = ChangeType.UPDATE, **kw: float) -> Job:
    return Job(1, "r", change, "a", "b", 3, state, 0, **kw)  # type: ignore[arg-type]


def test_leasable_states() -> None:
    assert leasable(job(JobState.READY), NOW)
    assert leasable(job(JobState.FAILED, retry_at=NOW), NOW)
    assert not leasable(job(JobState.FAILED, retry_at=NOW + 1), NOW)
    assert leasable(job(JobState.IN_PROGRESS, lease_expires_at=NOW - 1), NOW)
    assert not leasable(job(JobState.IN_PROGRESS, lease_expires_at=NOW + 1), NOW)
    assert not leasable(job(JobState.COMPLETED), NOW)
    assert not leasable(job(JobState.DEAD), NOW)


def test_jobs_for_down_nodes_are_left_alone() -> None:
    assert runnable(job(JobState.READY), NOW, {"a", "b"})
    assert not runnable(job(JobState.READY), NOW, {"a"})  # target down
    assert not runnable(job(JobState.READY), NOW, {"b"})  # source down
    assert runnable(job(JobState.READY, ChangeType.DELETE_REPLICA), NOW, {"b"})


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_seconds(n) for n in range(1, 10)]
    assert delays == sorted(delays)
    assert delays[0] == 1.0 and delays[-1] == 60.0


def test_a_job_older_than_its_target_is_obsolete() -> None:
    from cluster.background.replicator import obsolete
    from cluster.metadata.api import Replica, Repository

    repo = Repository("r", "p", "q", "a", 3, 0.0, (Replica("a", 5), Replica("b", 4)))
    assert obsolete(job(JobState.READY), repo)  # b at 4 >= the job's generation 3
    newer = Job(2, "r", ChangeType.UPDATE, "a", "b", 5, JobState.READY, 0)
    assert not obsolete(newer, repo)


# --- a worker against the real state machine (LocalStore), nodes faked ------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    # a is down for the cluster
    async with local_store(tmp_path / "raft", healthy=lambda name: name != "a", now=CLOCK) as s:
        yield s


class NodeCalls:
    """Stands in for `Replicator._call`: records (storage, method, relative_path)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    async def __call__(self, storage: str, method: str, request: Any, response_class: Any) -> Any:
        self.calls.append((storage, method, request.repository.relative_path))
        return response_class()


@pytest.fixture
def nodes() -> NodeCalls:
    return NodeCalls()


@pytest.fixture
def replicator(store: LocalStore, nodes: NodeCalls, monkeypatch: pytest.MonkeyPatch) -> Replicator:
    r = Replicator(
        owner="w1",
        store=store,
        nodes=NodePool("token", {n: f"127.0.0.1:{ord(n)}" for n in "abc"}),
        metrics=ProxyMetrics(),
        workers=1,
        lease_seconds=30.0,
        clock=lambda: CLOCK,
    )
    monkeypatch.setattr(r, "_call", nodes)
    return r


async def written(store: LocalStore, rid: str, storages: tuple[str, ...]) -> None:
    """`rid` on `storages`, written once on the first (the primary): jobs for the others."""
    await store.create_repository(
        rid, f"{rid}.git", f"@cluster/{rid}.git", list(storages), storages[0], 2, CLOCK
    )
    await store.begin_write(f"{rid}-w", rid, [storages[0]], "p1", CLOCK + 10)
    await store.finish_write(f"{rid}-w", [storages[0]], [], CLOCK)


async def settle(replicator: Replicator, rounds: int = 100) -> None:
    """Run rounds (as the replicator's loop would, when woken) until every job leased
    so far has finished: a job's completion leaves with the next round."""
    for _ in range(rounds):
        if not replicator._running:
            return
        await asyncio.sleep(0.01)
        await replicator.round()
    raise AssertionError(f"jobs still running after {rounds} rounds: {sorted(replicator._running)}")


async def test_a_repository_removed_before_the_copy_is_not_recreated_on_disk(
    store: LocalStore, nodes: NodeCalls, replicator: Replicator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await written(store, "r1", ("b", "c"))
    (job,) = await store.lease_jobs("w1", CLOCK, 30.0, 1)
    replicator.clock = lambda: CLOCK + 11  # the worker waited: its lease is confirmed
    real_renew = store.renew_leases

    async def removed_elsewhere(*args: Any) -> None:
        # another proxy's removal, committed just before the lease confirmation
        await store.remove_repository("r1", CLOCK)
        await real_renew(*args)

    monkeypatch.setattr(store, "renew_leases", removed_elsewhere)
    await replicator.execute(job)
    assert nodes.calls == []
    assert await store.complete_job(job.id, "w1", CLOCK) is False
    assert await store.get_repository_by_id("r1") is None


async def test_a_target_unassigned_meanwhile_is_not_recreated(
    store: LocalStore, nodes: NodeCalls, replicator: Replicator
) -> None:
    await written(store, "r1", ("b", "c"))
    (job,) = await store.lease_jobs("w1", CLOCK, 30.0, 1)
    await store.set_replication_factor("r1", [], ["c"], CLOCK)
    await replicator.execute(job)
    assert [m for _, m, _ in nodes.calls] == []


async def test_delete_replica_jobs_of_a_removed_repository_remove_its_replica_path(
    store: LocalStore, nodes: NodeCalls, replicator: Replicator
) -> None:
    await written(store, "r1", ("b", "c"))
    await store.remove_repository("r1", CLOCK)
    jobs = await store.lease_jobs("w1", CLOCK, 30.0, 5)
    for job in jobs:
        await replicator.execute(job)
    assert sorted(nodes.calls) == [
        ("b", "RemoveRepository", "@cluster/r1.git"),
        ("c", "RemoveRepository", "@cluster/r1.git"),
    ]


async def test_a_dead_node_does_not_starve_the_jobs_of_live_ones(
    store: LocalStore, nodes: NodeCalls, replicator: Replicator
) -> None:
    await written(store, "r1", ("a", "b"))  # the oldest job: a -> b, and a is down
    await written(store, "r2", ("b", "c"))  # b -> c
    (leased,) = await replicator.round()  # one free worker
    assert (leased.repository_id, leased.source, leased.target) == ("r2", "b", "c")
    await settle(replicator)
    assert nodes.calls == [("c", "ReplicateRepository", "@cluster/r2.git")]
    (waiting,) = await store.list_jobs([JobState.READY], 10)
    assert (waiting.repository_id, waiting.attempts) == ("r1", 0)


async def test_a_worker_whose_lease_was_taken_over_does_not_copy(
    store: LocalStore, nodes: NodeCalls, replicator: Replicator
) -> None:
    # w1 leased the job and was paused past its lease; w2 took it over. When w1 resumes,
    # its copy would mirror refs over whatever w2 (and later jobs) wrote there.
    await written(store, "r1", ("b", "c"))
    (job,) = await store.lease_jobs("w1", CLOCK, 30.0, 1)
    (again,) = await store.lease_jobs("w2", CLOCK + 31, 30.0, 1)
    assert again.id == job.id
    replicator.clock = lambda: CLOCK + 31  # w1 resumes
    with pytest.raises(FailedPreconditionError):
        await replicator.execute(job)
    assert nodes.calls == []


class CountedCommands:
    """Wraps a store's `submit`: the ops of the commands committed, in order."""

    def __init__(self, store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ops: list[str] = []
        self._submit = store.submit
        monkeypatch.setattr(store, "submit", self)

    async def __call__(self, op: str, args: dict[str, Any], *rest: Any, **kw: Any) -> Any:
        self.ops.append(op)
        return await self._submit(op, args, *rest, **kw)


class CountedEntries:
    """Wraps what a store's command batcher commits: what each log entry held ("batch
    of N" or an op)."""

    def __init__(self, store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entries: list[str] = []
        self._commit = store._batcher._commit
        monkeypatch.setattr(store._batcher, "_commit", self)

    async def __call__(self, payload: bytes, what: str, within: float | None) -> Any:
        self.entries.append(what)
        return await self._commit(payload, what, within)


async def test_a_copy_started_right_after_its_lease_costs_the_lease_and_the_completion(
    store: LocalStore, nodes: NodeCalls, replicator: Replicator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lease is a committed command applied here: fresh, it confirms itself, and the
    # state read after it includes every command committed before it (no barrier).
    await written(store, "r1", ("b", "c"))
    counted = CountedCommands(store, monkeypatch)
    entries = CountedEntries(store, monkeypatch)
    assert len(await replicator.round()) == 1
    await settle(replicator)
    assert nodes.calls == [("c", "ReplicateRepository", "@cluster/r1.git")]
    # the completion carries the next lease (which finds nothing): two log entries
    assert counted.ops == ["lease_jobs", "complete_job", "lease_jobs"]
    assert entries.entries == ["lease_jobs", "batch of 2"]
    assert [j.state for j in await store.list_jobs([JobState.COMPLETED], 10)] == [JobState.COMPLETED]


async def test_a_lease_older_than_a_third_of_its_time_is_confirmed_before_the_copy(
    store: LocalStore, nodes: NodeCalls, replicator: Replicator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await written(store, "r1", ("b", "c"))
    (job,) = await store.lease_jobs("w1", CLOCK, 30.0, 1)
    counted = CountedCommands(store, monkeypatch)
    replicator.clock = lambda: CLOCK + 9  # still fresh
    await replicator.execute(job)
    assert counted.ops == []
    replicator.clock = lambda: CLOCK + 11  # 11 of 30 s gone: confirmed
    await replicator.execute(job)
    assert counted.ops == ["renew_leases"]
    assert [c for _, c, _ in nodes.calls] == ["ReplicateRepository", "ReplicateRepository"]


async def test_a_finished_jobs_completion_shares_the_next_leases_log_entry(
    store: LocalStore, nodes: NodeCalls, replicator: Replicator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two jobs for the same target and one worker: the second is leased in the entry that
    # completes the first (which applies first: the per-target slot is free again).
    await written(store, "r1", ("b", "c"))
    await written(store, "r2", ("b", "c"))
    replicator.per_target = 1
    counted = CountedCommands(store, monkeypatch)
    entries = CountedEntries(store, monkeypatch)
    (first,) = await replicator.round()
    for _ in range(100):  # bounded: the first job runs on the node, then waits
        if replicator._completing:
            break
        await asyncio.sleep(0.01)
    (second,) = await replicator.round()
    assert (first.repository_id, second.repository_id) == ("r1", "r2")
    await settle(replicator)
    assert counted.ops == ["lease_jobs", "complete_job", "lease_jobs", "complete_job", "lease_jobs"]
    assert entries.entries == ["lease_jobs", "batch of 2", "batch of 2"]
    assert [j.repository_id for j in await store.list_jobs([JobState.COMPLETED], 10)] == ["r1", "r2"]


async def test_a_stopping_replicator_records_the_jobs_it_finished(
    store: LocalStore, nodes: NodeCalls, replicator: Replicator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The proxy is told to stop while a job's copy ends: the copy is done on the node,
    # its completion waits for a round that will not come.
    await written(store, "r1", ("b", "c"))
    stop = asyncio.Event()

    async def copy_then_stop(*args: Any) -> Any:
        answer = await nodes(*args)
        stop.set()
        return answer

    monkeypatch.setattr(replicator, "_call", copy_then_stop)
    await asyncio.wait_for(replicator.run(stop), 10)
    assert nodes.calls == [("c", "ReplicateRepository", "@cluster/r1.git")]
    assert [j.repository_id for j in await store.list_jobs([JobState.COMPLETED], 10)] == ["r1"]
