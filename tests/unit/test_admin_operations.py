"""The operator RPCs' decisions (cluster.admin) on the real state machine (LocalStore,
no Raft, no nodes): failover refusals and --force, accept-dataloss, replication factor
choice, removal dry run, and the `track_repository` command."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cluster.admin import operations
from cluster.metadata.api import JobState, Replica, Repository
from common.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from gitraft.v1 import cluster_pb2
from tests.unit.helpers import local_store
from tests.unit.test_router_coordinator import NOW, LocalStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    async with local_store(tmp_path / "raft", healthy=lambda name: name != "c") as s:
        yield s


async def repository(store: LocalStore, rid: str = "r1", primary: str = "a") -> Repository:
    """A repository on a, b, c: primary written to generation 0, b caught up, c not."""
    await store.create_repository(
        rid, f"g/{rid}.git", f"@cluster/{rid}.git", ["a", "b", "c"], primary, 3, NOW
    )
    await store.begin_write(f"i-{rid}", rid, [primary], "p1", NOW + 60)
    await store.finish_write(f"i-{rid}", [primary], [], NOW)
    others = [s for s in ("a", "b") if s != primary]
    for storage in others:
        await store.set_generation(rid, storage, 0, NOW)
    repo = await store.get_repository_by_id(rid)
    assert repo is not None
    return repo


async def test_failover_refuses_unknown_unhealthy_and_outdated_then_forces(store: LocalStore) -> None:
    await repository(store)
    request = cluster_pb2.SetPrimaryRequest
    with pytest.raises(NotFoundError, match=r"repository not found: 'g/none\.git'"):
        await operations.set_primary(store, request(relative_path="g/none.git", storage="b"), NOW)
    with pytest.raises(FailedPreconditionError, match="'x' holds no replica"):
        await operations.set_primary(store, request(relative_path="g/r1.git", storage="x"), NOW)
    with pytest.raises(FailedPreconditionError, match="'c' is unhealthy"):
        await operations.set_primary(store, request(relative_path="g/r1", storage="c"), NOW)
    moved = await operations.set_primary(store, request(relative_path="g/r1", storage="b"), NOW)
    assert (moved.previous_primary, moved.repository.primary, list(moved.overwritten)) == ("a", "b", [])

    await store.record_health("p1", "c", True, NOW)  # c healthy now, still outdated
    with pytest.raises(FailedPreconditionError, match=r"'c' is outdated .* --force would lose"):
        await operations.set_primary(store, request(relative_path="g/r1", storage="c"), NOW)
    forced = await operations.set_primary(store, request(relative_path="g/r1", storage="c", force=True), NOW)
    assert forced.repository.primary == "c" and list(forced.overwritten) == ["a", "b"]
    gens = {r.storage: r.generation for r in forced.repository.replicas}
    assert gens["c"] > max(gens["a"], gens["b"])
    jobs = await store.list_jobs([JobState.READY], 100)
    assert {(j.source, j.target) for j in jobs if j.repository_id == "r1"} >= {("c", "a"), ("c", "b")}


async def test_accept_dataloss_names_the_overwritten_replicas(store: LocalStore) -> None:
    await repository(store)
    with pytest.raises(FailedPreconditionError, match="'x' holds no replica"):
        await operations.accept_dataloss(
            store, cluster_pb2.AcceptDatalossRequest(relative_path="g/r1", authoritative_storage="x"), NOW
        )
    answer = await operations.accept_dataloss(
        store, cluster_pb2.AcceptDatalossRequest(relative_path="g/r1", authoritative_storage="b"), NOW
    )
    assert list(answer.overwritten) == ["a", "c"]
    assert {r.storage: r.up_to_date for r in answer.repository.replicas} == {
        "a": False,
        "b": True,
        "c": False,
    }


def repo_of(primary: str, gens: dict[str, int]) -> Repository:
    return Repository(
        "id",
        "p.git",
        "@cluster/id.git",
        primary,
        len(gens),
        NOW,
        tuple(Replica(s, g) for s, g in gens.items()),
    )


def test_choose_assignment_adds_least_loaded_healthy_and_removes_worst_non_primary() -> None:
    storages = ["a", "b", "c", "d", "e"]
    healthy = {"a", "b", "c", "d"}
    repo = repo_of("a", {"a": 3, "b": 3})
    assign, unassign = operations.choose_assignment(repo, 4, storages, healthy, {"c": 5, "d": 1, "e": 0})
    assert (assign, unassign) == (["d", "c"], [])  # e is unhealthy; d holds fewer than c
    with pytest.raises(FailedPreconditionError, match="needs 3 more"):
        operations.choose_assignment(repo, 5, storages, healthy, {})
    repo = repo_of("b", {"a": 3, "b": 3, "c": 2, "d": 3})
    # c is outdated, then the most loaded of the current ones; the primary b is never removed.
    assert operations.choose_assignment(repo, 2, storages, healthy, {"a": 1, "d": 7}) == ([], ["c", "d"])
    assert operations.choose_assignment(repo, 1, storages, healthy, {}) == ([], ["c", "a", "d"])


async def test_set_replication_factor_and_removal_dry_run(store: LocalStore) -> None:
    await repository(store)
    with pytest.raises(InvalidArgumentError):
        await operations.set_replication_factor(
            store, cluster_pb2.SetReplicationFactorRequest(relative_path="g/r1", replication_factor=0), NOW
        )
    answer = await operations.set_replication_factor(
        store, cluster_pb2.SetReplicationFactorRequest(relative_path="g/r1", replication_factor=2), NOW
    )
    assert list(answer.unassigned) == ["c"] and answer.repository.replication_factor == 2
    dry = await operations.remove_repository(
        store, cluster_pb2.RemoveClusterRepositoryRequest(relative_path="g/r1"), NOW
    )
    assert not dry.removed and await store.get_repository("g/r1.git") is not None
    done = await operations.remove_repository(
        store, cluster_pb2.RemoveClusterRepositoryRequest(relative_path="g/r1", apply=True), NOW
    )
    assert done.removed and await store.get_repository("g/r1.git") is None


async def test_track_repository_command(store: LocalStore) -> None:
    repo = await store.track_repository("t1", "imp/x.git", "imp/x.git", ["b", "a", "c"], "b", 3, NOW)
    assert repo.primary == "b" and {r.storage: r.generation for r in repo.replicas} == {
        "a": -1,
        "b": 0,
        "c": -1,
    }
    jobs = [j for j in await store.list_jobs(None, 100) if j.repository_id == "t1"]
    assert sorted((j.change, j.source, j.target, j.source_generation) for j in jobs) == [
        ("update", "b", "a", 0),
        ("update", "b", "c", 0),
    ]
    again = await store.track_repository("t1", "imp/x.git", "imp/x.git", ["b", "a", "c"], "b", 3, NOW)
    assert again == repo  # idempotent on the id: no second set of jobs
    assert len([j for j in await store.list_jobs(None, 100) if j.repository_id == "t1"]) == 2
    with pytest.raises(AlreadyExistsError):
        await store.track_repository("t2", "imp/x.git", "imp/y.git", ["a"], "a", 1, NOW)
    with pytest.raises(AlreadyExistsError):
        await store.track_repository("t3", "imp/z.git", "imp/x.git", ["a"], "a", 1, NOW)
    with pytest.raises(InvalidArgumentError):
        await store.track_repository("t4", "imp/w.git", "imp/w.git", ["a"], "b", 1, NOW)
    assert await store.get_repository("imp/w.git") is None
