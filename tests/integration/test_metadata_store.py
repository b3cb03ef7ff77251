"""RaftMetadataStore in this process (one real pysyncobj member on 127.0.0.1): the async
API the proxy codes against - results, error mapping, group commit, restart."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cluster.metadata.api import JobState
from cluster.metadata.config import RaftConfig
from cluster.metadata.store import RaftMetadataStore
from cluster.testing import free_port
from common.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)


def config(tmp_path: Path, port: int) -> RaftConfig:
    return RaftConfig(self_addr=f"127.0.0.1:{port}", password="pw", data_dir=tmp_path / "raft")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RaftMetadataStore]:
    s = RaftMetadataStore(config(tmp_path, free_port()))
    await s.start()
    try:
        await s.wait_ready(20)
        yield s
    finally:
        await s.stop()


async def setup_repo(store: RaftMetadataStore) -> None:
    for name in ("a", "b", "c"):
        await store.register_storage(name, f"127.0.0.1:{ord(name)}")
    await store.create_repository("r1", "g/p.git", "@cluster/r1.git", ["a", "b", "c"], "a", 3, now=1.0)


async def test_write_path_and_jobs(store: RaftMetadataStore) -> None:
    await setup_repo(store)
    intent = await store.begin_write("i1", "r1", ["a"], "proxy-1", deadline=10.0)
    assert intent.storages == ("a",)
    assert [i.intent_id for i in await store.expired_intents(now=11.0)] == ["i1"]
    result = await store.finish_write("i1", ["a"], [], now=2.0)
    assert (result.generation, result.scheduled) == (0, ("b", "c"))
    assert await store.expired_intents(now=11.0) == []
    assert await store.up_to_date_replicas("r1") == ["a"]
    assert await store.queue_depth() == {("ready", "b"): 1, ("ready", "c"): 1}

    jobs = await store.lease_jobs("w1", now=3.0, lease_seconds=10.0, limit=1)
    assert [(j.target, j.state, j.lease_owner) for j in jobs] == [("b", JobState.IN_PROGRESS, "w1")]
    await store.renew_leases("w1", [jobs[0].id], now=4.0, lease_seconds=10.0)
    with pytest.raises(FailedPreconditionError, match="leases lost"):
        await store.renew_leases("w2", [jobs[0].id], now=4.0, lease_seconds=10.0)
    with pytest.raises(FailedPreconditionError):
        await store.complete_job(jobs[0].id, "w2", now=5.0)
    await store.complete_job(jobs[0].id, "w1", now=5.0)
    assert await store.up_to_date_replicas("r1") == ["a", "b"]

    (other,) = await store.lease_jobs("w1", now=6.0, lease_seconds=10.0, limit=5)
    failed = await store.fail_job(other.id, "w1", "unreachable", now=7.0, retry_at=9.0)
    assert (failed.state, failed.attempts, failed.last_error) == (JobState.FAILED, 1, "unreachable")
    assert [j.id for j in await store.list_jobs([JobState.FAILED], 10)] == [other.id]
    assert await store.set_generation("r1", "c", 0, now=8.0) == 0
    repo = await store.get_repository("g/p.git")
    assert repo is not None and repo.up_to_date() == ("a", "b", "c")


async def test_refusals_map_to_common_errors(store: RaftMetadataStore) -> None:
    await setup_repo(store)
    with pytest.raises(AlreadyExistsError):
        await store.create_repository("r2", "g/p.git", "@cluster/r2.git", ["a"], "a", 1, now=1.0)
    with pytest.raises(NotFoundError):
        await store.finish_write("nope", ["a"], [], now=1.0)
    with pytest.raises(FailedPreconditionError):
        await store.set_primary("r1", "zzz", now=1.0)
    with pytest.raises(InvalidArgumentError):
        await store.submit("no_such_op", {})
    # Idempotent creation returns the existing repository.
    again = await store.create_repository("r1", "g/p.git", "@cluster/r1.git", ["a"], "a", 1, now=5.0)
    assert again.replication_factor == 3


async def test_concurrent_commands_share_entries_and_keep_their_own_results(store: RaftMetadataStore) -> None:
    await setup_repo(store)
    before = store.status().commit_index

    async def one(i: int) -> object:
        try:
            if i % 10 == 0:
                await store.set_primary("r1", "zzz", now=1.0)  # refused
            return await store.set_generation("r1", "abc"[i % 3], i, now=float(i))
        except FailedPreconditionError:
            return "refused"

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert results.count("refused") == 20
    gens = {r.storage: r.generation for r in (await store.get_repository_by_id("r1")).replicas}  # type: ignore[union-attr]
    assert gens == {"a": 198, "b": 199, "c": 197}
    # 200 commands (plus 20 refused) took far fewer log entries than commands.
    assert store.status().commit_index - before < 220


async def test_health_votes_and_valid_primaries(store: RaftMetadataStore) -> None:
    await setup_repo(store)
    await store.begin_write("i1", "r1", ["a", "b"], "p1", deadline=10.0)
    await store.finish_write("i1", ["a", "b"], [], now=2.0)
    for proxy in ("p1", "p2", "p3"):
        await store.record_health(proxy, "a", proxy != "p1", now=100.0)
        await store.record_health(proxy, "b", proxy == "p1", now=100.0)
    assert await store.healthy_storages(now=101.0) == {"a"}
    assert await store.valid_primaries("r1", now=101.0) == ["a"]
    unavailable, partial = await store.dataloss(now=101.0, include_partial=True)
    assert (unavailable, [r.repository_id for r in partial]) == ([], ["r1"])
    repo = await store.accept_dataloss("r1", "b", now=3.0)
    assert repo.up_to_date() == ("b",)


async def test_removal_primary_checks_healthy_leases_and_votes_through_raft(store: RaftMetadataStore) -> None:
    await setup_repo(store)
    await store.begin_write("i1", "r1", ["a"], "p1", deadline=10.0)
    await store.finish_write("i1", ["a"], [], now=2.0)  # a at 0; jobs for b and c
    with pytest.raises(FailedPreconditionError, match="outdated"):
        await store.set_primary("r1", "b", now=3.0)
    assert await store.lease_jobs("w1", now=3.0, lease_seconds=10.0, limit=5, healthy={"b", "c"}) == []
    (job,) = await store.lease_jobs("w1", now=3.0, lease_seconds=10.0, limit=1, healthy={"a", "c"})
    assert job.target == "c"
    await store.remove_repository("r1", now=4.0)
    assert await store.complete_job(job.id, "w1", now=5.0) is False
    assert await store.get_repository_by_id("r1") is None
    assert {j.change for j in await store.list_jobs([JobState.READY], 10)} == {"delete_replica"}
    await store.record_health("p1", "a", True, now=100.0)
    await store.record_health("p2", "a", False, now=101.0)
    votes = await store.health_votes()
    assert {p: {s: v.healthy for s, v in by.items()} for p, by in votes.items()} == {
        "p1": {"a": True},
        "p2": {"a": False},
    }


async def test_restart_replays_the_journal_and_one_replicated_method(tmp_path: Path) -> None:
    port = free_port()
    store = RaftMetadataStore(config(tmp_path, port))
    await store.start()
    try:
        await store.wait_ready(20)
        # Positional method ids: exactly one replicated method, id 0, forever.
        assert store.raft._member._methodToID == {"apply_entry_v0": 0}
        await setup_repo(store)
        await store.begin_write("i1", "r1", ["a"], "p1", deadline=10.0)
        await store.finish_write("i1", ["a"], ["b"], now=2.0)
        await store.barrier()
        expected = await store.list_repositories()
    finally:
        await store.stop()

    store = RaftMetadataStore(config(tmp_path, port))
    await store.start()
    try:
        await store.wait_ready(20)
        assert await store.list_repositories() == expected
        assert [j.target for j in await store.list_jobs(None, 10)] == ["b", "c"]
    finally:
        await store.stop()


async def test_a_stopped_store_and_a_missing_password_fail_clearly(tmp_path: Path) -> None:
    store = RaftMetadataStore(config(tmp_path, free_port()))
    with pytest.raises(UnavailableError, match="not started"):
        await store.storages()
    bare = RaftConfig(self_addr=f"127.0.0.1:{free_port()}", data_dir=tmp_path / "x")
    with pytest.raises(InvalidArgumentError, match="password"):
        await RaftMetadataStore(bare).start()


async def test_a_raft_port_in_use_fails_start_clearly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = RaftConfig(
            self_addr=f"127.0.0.1:{port}", password="pw", data_dir=tmp_path / "r", bind_timeout=0.5
        )
        store = RaftMetadataStore(cfg)
        with pytest.raises(UnavailableError, match="cannot bind"):
            await store.start()
        await store.stop()
