"""The reconciler's metadata: the outdated-replicas index, repairs from the primary,
retries of dead jobs, pruning, and leases that do not starve behind a stopped node."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cluster.background.replicator import Replicator
from cluster.metadata.api import ChangeType, JobState, RepairItem
from cluster.observability.metrics import ProxyMetrics
from cluster.proxy.nodes import NodePool
from tests.unit.helpers import local_store
from tests.unit.test_router_coordinator import LocalStore

NOW = 1000.0


async def written(store: LocalStore, rid: str, storages: list[str], n: int = 1) -> None:
    """Create `rid` on `storages` (primary first) and write it `n` times on the primary."""
    await store.create_repository(rid, f"{rid}.git", f"@cluster/{rid}.git", storages, storages[0], 3, NOW)
    for i in range(n):
        await store.begin_write(f"{rid}-{i}", rid, [storages[0]], "p1", NOW + 60)
        await store.finish_write(f"{rid}-{i}", [storages[0]], [], NOW)


async def test_outdated_index_follows_generations(tmp_path: Path) -> None:
    async with local_store(tmp_path, healthy=lambda s: True) as store:
        await written(store, "r1", ["a", "b", "c"])
        assert sorted(await store.outdated_without_job(["a", "b", "c"], 10)) == []  # jobs wait
        jobs = await store.lease_jobs("w", NOW, 30, 10)
        for job in jobs:
            await store.fail_job(job.id, "w", "boom", NOW, NOW)
        # failed jobs are live: nothing to reconcile yet
        assert await store.outdated_without_job(["b", "c"], 10) == []
        await store.retry_jobs([], True, NOW)  # nothing dead: no change
        leased = await store.lease_jobs("w", NOW + 1, 30, 10)
        for job in leased:
            await store.fail_job(job.id, "w", "boom again", NOW + 1, NOW + 1)
        states = {j.target: j.state for j in await store.list_jobs(None, 10)}
        assert set(states.values()) == {JobState.FAILED}


async def test_dead_job_then_fresh_work_then_superseded(tmp_path: Path) -> None:
    async with local_store(tmp_path, healthy=lambda s: True) as store:
        store.config.job_max_attempts = 1
        await written(store, "r1", ["a", "b"])
        (job,) = await store.lease_jobs("w", NOW, 30, 10)
        dead = await store.fail_job(job.id, "w", "disk on fire", NOW, NOW)
        assert dead.state is JobState.DEAD and dead.last_error == "disk on fire"
        assert await store.outdated_without_job(["b"], 10) == [("r1", "b")]
        assert await store.recently_dead(NOW - 1) == {("r1", "b")}
        item = RepairItem(repository_id="r1", storage="b", reset=False, generation=-1)
        assert await store.schedule_repairs([item], NOW) == ["scheduled"]
        assert await store.schedule_repairs([item], NOW) == ["job waiting"]
        fresh = await store.lease_jobs("w", NOW + 1, 30, 10)
        assert [(j.source, j.target, j.source_generation) for j in fresh] == [("a", "b", 0)]
        await store.complete_job(fresh[0].id, "w", NOW + 1)
        assert await store.schedule_repairs([item], NOW) == ["up to date"]
        pruned = await store.prune_jobs(NOW - 3600, 100)
        assert pruned["superseded"] == 1  # the dead job: its target now holds its generation
        assert [j.state for j in await store.list_jobs(None, 10)] == [JobState.COMPLETED]


async def test_reset_repairs_from_the_primary_and_drops_the_generation(tmp_path: Path) -> None:
    async with local_store(tmp_path, healthy=lambda s: True) as store:
        await written(store, "r1", ["a", "b", "c"])
        for job in await store.lease_jobs("w", NOW, 30, 10):
            await store.complete_job(job.id, "w", NOW)
        repo = await store.get_repository_by_id("r1")
        assert repo is not None and repo.up_to_date() == ("a", "b", "c")
        stale = RepairItem(repository_id="r1", storage="b", reset=True, generation=5)
        assert await store.schedule_repairs([stale], NOW) == ["changed meanwhile"]
        primary = RepairItem(repository_id="r1", storage="a", reset=True, generation=0)
        assert await store.schedule_repairs([primary], NOW) == ["is the primary"]
        item = RepairItem(repository_id="r1", storage="b", reset=True, generation=0)
        assert await store.schedule_repairs([item], NOW) == ["scheduled"]
        repo = await store.get_repository_by_id("r1")
        assert repo is not None and repo.up_to_date() == ("a", "c")
        (job,) = await store.lease_jobs("w", NOW, 30, 10)
        assert (job.change, job.source, job.target, job.source_generation) == (ChangeType.UPDATE, "a", "b", 0)


async def test_retry_makes_dead_jobs_ready(tmp_path: Path) -> None:
    async with local_store(tmp_path, healthy=lambda s: True) as store:
        store.config.job_max_attempts = 1
        await written(store, "r1", ["a", "b"])
        (job,) = await store.lease_jobs("w", NOW, 30, 10)
        await store.fail_job(job.id, "w", "nope", NOW, NOW)
        assert await store.retry_jobs([job.id + 100], False, NOW) == []
        assert await store.retry_jobs([], True, NOW) == [job.id]
        (again,) = await store.list_jobs(None, 10)
        assert (again.state, again.attempts, again.last_error) == (JobState.READY, 0, "nope")


async def test_max_per_target_bounds_leases(tmp_path: Path) -> None:
    async with local_store(tmp_path, healthy=lambda s: True) as store:
        for i in range(6):
            await written(store, f"r{i}", ["a", "b"])
        first = await store.lease_jobs("w", NOW, 30, 10, {"a", "b"}, max_per_target=2)
        assert len(first) == 2
        assert not await store.runnable_job_exists(NOW, {"a", "b"}, 2)  # no lease command is wasted
        assert await store.runnable_job_exists(NOW, {"a", "b"}, 3)
        assert await store.lease_jobs("w2", NOW, 30, 10, {"a", "b"}, max_per_target=2) == []
        await store.complete_job(first[0].id, "w", NOW)
        assert await store.runnable_job_exists(NOW, {"a", "b"}, 2)
        assert len(await store.lease_jobs("w2", NOW, 30, 10, {"a", "b"}, max_per_target=2)) == 1


class _NoNodes(Replicator):
    """A replicator whose jobs succeed without a node (metadata only)."""

    async def execute(self, job: object) -> None:
        return None


async def test_jobs_for_live_nodes_drain_behind_1200_for_a_stopped_one(tmp_path: Path) -> None:
    async with local_store(tmp_path, healthy=lambda s: s != "c") as store:
        for i in range(1200):
            await written(store, f"down{i:04d}", ["a", "c"])
        for i in range(40):
            await written(store, f"live{i:02d}", ["a", "b"])
        replicator = _NoNodes(
            owner="p1",
            store=store,
            nodes=NodePool("t"),
            metrics=ProxyMetrics(),
            workers=8,
            lease_seconds=30,
            clock=lambda: NOW,
        )
        for _ in range(40):  # bounded; a job's completion leaves with the next round's lease
            await replicator.round()
            await asyncio.sleep(0.01)  # the jobs run, wait for their completion, free their slots
        counts = await store.job_counts()
        done = await store.list_jobs([JobState.COMPLETED], 100)
        assert {j.target for j in done} == {"b"} and len(done) == 40, counts
        assert counts == {"ready": 1200, "completed": 40}
        # What the queue-depth gauge is set from at scrape (cluster.observability.state_metrics):
        # every waiting job counted, not the first 1,000.
        depth = await store.queue_depth()
        assert sum(n for (state, _), n in depth.items() if state == "ready") == 1200


async def test_indexed_queries_agree_with_a_full_scan(tmp_path: Path) -> None:
    """storage_counts, failover_candidates, dataloss and the outdated index give what a
    scan of every repository gives, on a state with every kind of replica."""
    import random

    from cluster.proxy.placement import counts

    rng = random.Random(7)
    async with local_store(tmp_path, healthy=lambda s: s != "c") as store:
        for i in range(40):
            storages = rng.sample(["a", "b", "c"], rng.randint(1, 3))
            await written(store, f"r{i:02d}", storages, n=rng.randint(0, 2))
        for job in await store.lease_jobs("w", NOW, 30, 25, {"a", "b", "c"}):
            if rng.random() < 0.6:
                await store.complete_job(job.id, "w", NOW)
        await store.remove_repository("r00", NOW)
        await store.set_replication_factor("r01", ["a", "b", "c"], [], NOW)
        await store.set_primary("r02", "a", NOW) if "a" in (await store.up_to_date_replicas("r02")) else None
        repos = await store.list_repositories()
        healthy = await store.healthy_storages(NOW)
        assert await store.storage_counts() == counts(repos)
        assert await store.repository_count() == len(repos) == 39
        by_state = await store.db.execute_fetchall(
            "SELECT state, COUNT(*) FROM replication_jobs GROUP BY state"
        )
        assert await store.job_counts() == {s: n for s, n in by_state}
        must_move = {
            r.repository_id
            for r in repos
            if (r.primary not in healthy or r.primary not in r.up_to_date()) and set(r.up_to_date()) & healthy
        }
        assert {r.repository_id for r in await store.failover_candidates(healthy, 1000)} == must_move
        assert must_move  # the state has some
        outdated = {
            (r.repository_id, x.storage) for r in repos for x in r.replicas if x.generation < r.generation
        }
        assert set(await store.outdated_without_job(["a", "b", "c"], 1000)) <= outdated
        rows = await store.db.execute_fetchall("SELECT repository_id, storage FROM outdated_replicas")
        assert {(r, s) for r, s in rows} == outdated and outdated
        unavailable, partial = await store.dataloss(NOW, True)
        want_unavailable = [r for r in repos if not set(r.up_to_date()) & healthy]
        want_partial = [
            r
            for r in repos
            if set(r.up_to_date()) & healthy
            and any(x.storage not in r.up_to_date() or x.storage not in healthy for x in r.replicas)
        ]
        assert (unavailable, partial) == (want_unavailable, want_partial)
        assert want_unavailable and want_partial


class _Blocked(Replicator):
    """A replicator whose jobs run until `release` is set."""

    release = asyncio.Event()

    async def execute(self, job: object) -> None:
        await self.release.wait()


async def test_one_command_renews_every_running_lease(tmp_path: Path) -> None:
    async with local_store(tmp_path, healthy=lambda s: True) as store:
        for i in range(3):
            await written(store, f"r{i}", ["a", "b"])
        clock = [NOW]
        replicator = _Blocked(
            owner="p1",
            store=store,
            nodes=NodePool("t"),
            metrics=ProxyMetrics(),
            workers=2,
            lease_seconds=30,
            clock=lambda: clock[0],
        )
        replicator.release = asyncio.Event()
        leased = await replicator.round()
        assert len(leased) == 2
        clock[0] = NOW + 20
        assert await replicator.renew() == []
        running = await store.list_jobs([JobState.IN_PROGRESS], 10)
        assert sorted(j.lease_expires_at for j in running) == [NOW + 50, NOW + 50]
        clock[0] = NOW + 100  # expired: lost, and another owner may take them
        tasks = list(replicator._running.values())
        assert await replicator.renew() == [j.id for j in leased]
        # A job whose lease is lost stops: another owner may be copying newer data.
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results


def test_paged_lease_picks_what_a_full_scan_picks(monkeypatch: Any) -> None:
    """lease_jobs reads candidates a page per state; with tiny pages it still leases
    exactly the jobs the rule names (oldest leasable first, healthy, one per target)."""
    import random
    import sqlite3

    from cluster.metadata import jobs, schema

    monkeypatch.setattr(jobs, "LEASE_PAGE", 3)
    rng = random.Random(3)
    for trial in range(30):
        conn = sqlite3.connect(":memory:", isolation_level=None)
        schema.create(conn)
        rows = []
        for i in range(1, 60):
            state = rng.choice(["ready", "failed", "in_progress", "completed", "dead"])
            rows.append(
                (i, f"r{rng.randint(0, 15)}", rng.choice(["update", "delete_replica"]), rng.choice("abc"),
                 rng.choice("abc"), 1, state, rng.randint(0, 2), "x", rng.choice([NOW - 1, NOW + 1]),
                 rng.choice([NOW - 1, NOW + 1]), 0.0, 0.0)
            )  # fmt: skip
        conn.executemany(
            "INSERT INTO replication_jobs (id, repository_id, change, source, target, source_generation,"
            " state, attempts, lease_owner, lease_expires_at, retry_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        healthy = sorted(rng.sample("abc", rng.randint(1, 3)))
        limit = rng.randint(1, 20)
        busy = {(r[1], r[4]) for r in rows if r[6] == "in_progress" and r[9] > NOW}
        want: list[int] = []
        for r in rows:
            leasable = r[6] == "ready" or (r[6] == "failed" and r[10] <= NOW)
            expired = r[6] == "in_progress" and r[9] <= NOW
            needs = {r[3], r[4]} if r[2] == "update" else {r[4]}
            if len(want) >= limit:
                break
            if not (leasable or expired) or not needs <= set(healthy) or (r[1], r[4]) in busy:
                continue
            if expired and r[7] + 1 >= 5:
                continue
            want.append(r[0])
            busy.add((r[1], r[4]))
        args = {"owner": "w", "now": NOW, "lease_seconds": 30, "limit": limit, "healthy": healthy}
        got = [j["id"] for j in jobs.lease_jobs(conn, args)]
        assert got == want, (trial, healthy, limit)


async def test_reconciler_schedules_outdated_replicas_at_a_bounded_rate(tmp_path: Path) -> None:
    from cluster.background.reconciler import Reconciler

    async with local_store(tmp_path, healthy=lambda s: True) as store:
        store.config.job_max_attempts = 1
        for i in range(25):
            await written(store, f"r{i:02d}", ["a", "b"])
        for job in await store.lease_jobs("w", NOW, 30, 100):
            await store.fail_job(job.id, "w", "target broken", NOW, NOW)  # every job dies
        clock = [NOW + 1]
        reconciler = Reconciler(
            store=store,
            nodes=NodePool("t"),
            metrics=ProxyMetrics(),
            batch=10,
            exists_batch=0,
            dead_retry_after=30,
            clock=lambda: clock[0],
        )
        assert (await reconciler.round()).scheduled == []  # died 1 s ago: cooling down
        clock[0] = NOW + 31
        first = await reconciler.round()
        assert len(first.scheduled) == 10 and {s for _, s in first.scheduled} == {"b"}
        second = await reconciler.round()
        assert len(second.scheduled) == 10 and not set(first.scheduled) & set(second.scheduled)
        assert len((await reconciler.round()).scheduled) == 5
        assert (await reconciler.round()).scheduled == []  # every replica has a job now
        counts = await store.job_counts()
        assert counts == {"dead": 25, "ready": 25}
        store.leader = False
        assert (await reconciler.round()).scheduled == []


async def test_reconciler_retries_a_dead_deletion_once_its_node_is_back(tmp_path: Path) -> None:
    from cluster.background.reconciler import Reconciler

    async with local_store(tmp_path, healthy=lambda s: True) as store:
        store.config.job_max_attempts = 1
        await written(store, "r1", ["a", "b"])
        for job in await store.lease_jobs("w", NOW, 30, 10):
            await store.complete_job(job.id, "w", NOW)
        await store.set_replication_factor("r1", [], ["b"], NOW)
        (delete,) = await store.lease_jobs("w", NOW, 30, 10)
        assert delete.change is ChangeType.DELETE_REPLICA
        await store.fail_job(delete.id, "w", "node gone", NOW, NOW)
        clock = [NOW + 10]
        reconciler = Reconciler(
            store=store, nodes=NodePool("t"), metrics=ProxyMetrics(), exists_batch=0, clock=lambda: clock[0]
        )
        assert (await reconciler.round()).retried == []  # died 10 s ago
        clock[0] = NOW + 31
        assert (await reconciler.round()).retried == [delete.id]
        (again,) = await store.list_jobs([JobState.READY], 10)
        assert again.id == delete.id and again.attempts == 0


async def test_the_verifier_form_raises_the_matching_replicas_and_lowers_none(tmp_path: Path) -> None:
    """`matching` given: the primary and the replicas that matched it go to the next
    generation once per command, each differing replica keeps its generation (now
    outdated) and gets a job at the new one; a repository whose generation moved since
    the comparison is left alone."""
    async with local_store(tmp_path, healthy=lambda s: True) as store:
        await written(store, "r1", ["a", "b", "c"])
        for job in await store.lease_jobs("w", NOW, 30, 10):
            await store.complete_job(job.id, "w", NOW)
        moved = RepairItem(repository_id="r1", storage="b", reset=True, generation=5, matching=["a"])
        assert await store.schedule_repairs([moved], NOW) == ["changed meanwhile"]
        items = [
            RepairItem(repository_id="r1", storage="b", reset=True, generation=0, matching=["a"]),
            RepairItem(repository_id="r1", storage="c", reset=True, generation=0, matching=["a"]),
        ]
        assert await store.schedule_repairs(items, NOW) == ["scheduled", "scheduled"]
        repo = await store.get_repository_by_id("r1")
        assert repo is not None
        assert {r.storage: r.generation for r in repo.replicas} == {"a": 1, "b": 0, "c": 0}
        waiting = [j for j in await store.list_jobs(None, 10) if j.state is JobState.READY]
        assert sorted((j.target, j.source, j.source_generation) for j in waiting) == [
            ("b", "a", 1),
            ("c", "a", 1),
        ]
        # The same comparison reported again (e.g. by a second verifier): nothing moves.
        assert await store.schedule_repairs(items[:1], NOW) == ["changed meanwhile"]
        one = RepairItem(repository_id="r1", storage="b", reset=True, generation=1, matching=["a", "c"])
        assert await store.schedule_repairs([one], NOW) == ["changed meanwhile"]  # b is at 0, not 1
