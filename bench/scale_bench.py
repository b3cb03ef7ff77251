"""Scale: what the metadata costs at 1k, 10k and 100k repositories, and a live cluster.

    .venv/bin/python -m bench scale_bench        (or: make bench)
    .venv/bin/python bench/scale_bench.py --sizes 1000,10000,100000 --live 1000,10000

1. Metadata only (the state machine's commands applied directly to SQLite, as every
   proxy applies them, no Raft and no nodes), at each size in --sizes: the fill rate
   (create_repository + a write per repository, in batches), then the queries and
   commands whose cost must not grow with the repository count - an idle elector
   round (`failover_candidates`), an idle reconciler round (`outdated_without_job`,
   `recently_dead`), placement (`storage_counts`), ClusterStatus (`repository_count`,
   `job_counts`), DatalossCheck (`dataloss`), the replicator's `runnable_job_exists`
   - median of 20 each; the snapshot (SQLite backup) size and time; and, with
   --queue jobs ready (default 100k), `lease_jobs` (8 at a time) + `complete_job`
   p50/p99.
2. A live cluster (3 proxies, 3 nodes, real git/gRPC/Raft on 127.0.0.1) at each size in
   --live: repositories created through CreateRepository (16 in flight, one proxy),
   then: creation rate, small-push latency (median of 10), the Raft leader's CPU while
   idle (5 s), how much the Raft term moved meanwhile (elections), the time from a
   full restart of the proxies to the first acknowledged push, and the drain rate of
   a backlog: node-c is stopped while --backlog repositories are created (each leaves
   a job for it), then started; jobs completed per second until none waits.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosqlite

from cluster.metadata import queries, schema, statemachine
from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster, commit_file, init_work_tree, run_git
from common.auth import bearer_metadata
from gitraft.v1 import repository_pb2, repository_pb2_grpc, shared_pb2

NOW = 1_000_000.0
STORAGES = ["node-a", "node-b", "node-c"]


# --- 1. metadata only -------------------------------------------------------------------


class Machine:
    """The state machine on one SQLite file, applied directly (what each proxy does)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = schema.connect(str(path))
        schema.create(self.conn)
        self.index = 0

    def apply(self, commands: list[dict[str, Any]]) -> list[Any]:
        self.index += 1
        result = statemachine.apply(self.conn, {"op": "batch", "commands": commands}, self.index)
        return list(result)


def fill(machine: Machine, count: int, start: int = 0) -> float:
    """`count` repositories, each created and written once (jobs for two secondaries,
    which then complete); returns repositories per second."""
    began = time.monotonic()
    for first in range(start, start + count, 500):
        ids = range(first, min(first + 500, start + count))
        machine.apply([_create(i) for i in ids])
        machine.apply([_begin(i) for i in ids])
        machine.apply([_finish(i) for i in ids])
    took = time.monotonic() - began
    drain(machine)
    return count / took


def _create(i: int) -> dict[str, Any]:
    primary = STORAGES[i % 3]
    storages = [primary, *[s for s in STORAGES if s != primary]]
    return {
        "op": "create_repository",
        "cid": f"create-{i}",
        "args": {
            "repository_id": f"{i:032x}",
            "relative_path": f"group/project-{i}.git",
            "replica_path": f"@cluster/{i:032x}.git",
            "storages": storages,
            "primary": primary,
            "replication_factor": 3,
            "now": NOW,
        },
    }


def _begin(i: int) -> dict[str, Any]:
    args = {
        "intent_id": f"w-{i}",
        "repository_id": f"{i:032x}",
        "storages": [STORAGES[i % 3]],
        "proxy": "p",
        "deadline": NOW + 60,
    }
    return {"op": "begin_write", "cid": f"b-{i}", "args": args}


def _finish(i: int) -> dict[str, Any]:
    args = {"intent_id": f"w-{i}", "succeeded": [STORAGES[i % 3]], "failed": [], "now": NOW}
    return {"op": "finish_write", "cid": f"f-{i}", "args": args}


def drain(machine: Machine) -> None:
    """Lease and complete every waiting job (metadata only)."""
    while True:
        (leased,) = machine.apply([_lease(500)])
        jobs = leased.get("ok") or []
        if not jobs:
            return
        machine.apply([_complete(j["id"]) for j in jobs])


def _lease(limit: int) -> dict[str, Any]:
    args = {"owner": "w", "now": NOW, "lease_seconds": 30, "limit": limit, "healthy": STORAGES}
    return {"op": "lease_jobs", "args": args}


def _complete(job_id: int) -> dict[str, Any]:
    return {
        "op": "complete_job",
        "args": {"job_id": job_id, "owner": "w", "now": NOW, "removed_is_noop": True},
    }


async def median_ms(call: Callable[[], Awaitable[Any]], runs: int = 20) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        await call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


async def query_costs(path: Path) -> dict[str, float]:
    healthy = set(STORAGES)
    async with aiosqlite.connect(str(path)) as db:
        return {
            "elector round": await median_ms(lambda: queries.failover_candidates(db, healthy, 1000)),
            "reconciler round": await median_ms(
                lambda: _both(
                    queries.outdated_without_job(db, STORAGES, 100), queries.recently_dead(db, NOW - 30)
                )
            ),
            "placement counts": await median_ms(lambda: queries.storage_counts(db)),
            "status counts": await median_ms(
                lambda: _both(queries.repository_count(db), queries.job_counts(db))
            ),
            "dataloss": await median_ms(lambda: queries.dataloss(db, NOW, 10.0, True)),
            "runnable job?": await median_ms(lambda: queries.runnable_job_exists(db, NOW, healthy)),
        }


async def _both(a: Awaitable[Any], b: Awaitable[Any]) -> None:
    await a
    await b


def snapshot_cost(machine: Machine, work: Path) -> tuple[float, float]:
    """(MiB, seconds) of a SQLite backup of the state (what a snapshot writes)."""
    import sqlite3

    target = work / "snapshot.db"
    target.unlink(missing_ok=True)
    began = time.monotonic()
    dst = sqlite3.connect(str(target))
    machine.conn.backup(dst)
    dst.close()
    return target.stat().st_size / 2**20, time.monotonic() - began


def lease_complete(machine: Machine, queue: int, rounds: int = 200) -> tuple[float, float]:
    """p50/p99 ms of lease_jobs(8) + complete_job of those 8, with `queue` jobs ready
    (queue / 2 more repositories, each written once: two jobs each)."""
    base = 10_000_000
    repositories = queue // 2
    for first in range(0, repositories, 1000):
        ids = range(base + first, base + min(first + 1000, repositories))
        machine.apply([_create(i) for i in ids])
        machine.apply([_begin(i) for i in ids])
        machine.apply([_finish(i) for i in ids])
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        (leased,) = machine.apply([_lease(8)])
        machine.apply([_complete(j["id"]) for j in leased["ok"]])
        times.append(time.perf_counter() - began)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99) - 1] * 1000


def metadata_section(sizes: list[int], queue: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="gitraft-scale-") as tmp:
        for size in sizes:
            work = Path(tmp) / str(size)
            work.mkdir()
            machine = Machine(work / "state.db")
            rate = fill(machine, size)
            costs = asyncio.run(query_costs(machine.path))
            mib, secs = snapshot_cost(machine, work)
            p50, p99 = lease_complete(machine, queue) if queue else (0.0, 0.0)
            rows.append((size, rate, costs, mib, secs, p50, p99))
            machine.conn.close()
    keys = list(rows[0][2])
    print(f"metadata only (state machine applied directly; queries median of 20, ms); {queue} jobs queued")
    header = ["repositories", "fill/s", *keys, "snapshot MiB", "snapshot s", "lease+complete p50", "p99"]
    print(" | ".join(header))
    for size, rate, costs, mib, secs, p50, p99 in rows:
        cells = [f"{size}", f"{rate:.0f}", *(f"{costs[k]:.2f}" for k in keys)]
        cells += [f"{mib:.1f}", f"{secs:.2f}", f"{p50:.2f}", f"{p99:.2f}"]
        print(" | ".join(cells))


# --- 2. live cluster ----------------------------------------------------------------------


def create_many(cluster: LocalCluster, count: int, prefix: str) -> float:
    """Create `count` repositories through proxy-1, 16 in flight; returns creates/s."""
    stub = repository_pb2_grpc.RepositoryServiceStub(cluster.channel("proxy-1"))
    md = bearer_metadata(cluster.token)

    def one(i: int) -> None:
        repo = shared_pb2.Repository(relative_path=f"{prefix}/r{i}.git")
        stub.CreateRepository(
            repository_pb2.CreateRepositoryRequest(repository=repo), metadata=md, timeout=120
        )

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))
    return count / (time.monotonic() - began)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def push_latency(cluster: LocalCluster, work: Path, path: str, runs: int = 10) -> float:
    times = []
    for i in range(runs):
        commit_file(work, "a.txt", f"push {i}\n")
        began = time.monotonic()
        run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work)
        times.append(time.monotonic() - began)
    return statistics.median(times) * 1000


def leader_idle_cpu(cluster: LocalCluster, seconds: float = 5.0) -> float:
    leader = cluster.wait_for_leader()
    process = cluster.proxies[leader].process
    assert process is not None
    pid = process.proc.pid
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds * 100


def raft_term(cluster: LocalCluster) -> int:
    leader = cluster.wait_for_leader()
    me = [p for p in cluster.cluster_status(leader).proxies if p.name == leader]
    return int(me[0].raft_term)


def restart_to_push(cluster: LocalCluster, work: Path, path: str) -> float:
    for name in cluster.proxies:
        cluster.stop(name)
    began = time.monotonic()
    for name in cluster.proxies:
        process = cluster.proxies[name]
        process.spawn()
    for name in cluster.proxies:
        cluster.proxies[name].wait_serving(300)
    commit_file(work, "a.txt", "after restart\n")
    while True:
        try:
            run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work, timeout=60)
            return time.monotonic() - began
        except RuntimeError:
            time.sleep(0.1)


def drain_rate(cluster: LocalCluster, count: int) -> float:
    """Stop node-c, create `count` repositories (each leaves a job for node-c), start it
    again; returns jobs completed per second until its queue is empty."""
    cluster.stop("node-c")
    cluster.wait_health({"node-c": False})
    create_many(cluster, count, "backlog")
    cluster.start_process("node-c")
    began = time.monotonic()

    def waiting() -> int:
        return sum(1 for j in cluster.jobs(states=["ready", "failed", "in_progress"]))

    while waiting():
        time.sleep(0.2)
    return count / (time.monotonic() - began)


def live_section(sizes: list[int], backlog: int) -> None:
    print("live cluster (3 proxies, 3 nodes, 127.0.0.1)")
    print(
        "repositories | create/s | push p50 ms | leader idle CPU % | Raft term changes (create, push, idle)"
        " | restart to push s | backlog drain jobs/s"
    )
    settings = {**TEST_PROXY_SETTINGS, "reconcile_exists_batch": 20}
    with tempfile.TemporaryDirectory(prefix="gitraft-scale-live-") as tmp:
        for size in sizes:
            base = Path(tmp) / str(size)
            with LocalCluster(base / "cluster", proxies=3, nodes=3, proxy_settings=settings) as cluster:
                term = raft_term(cluster)
                rate = create_many(cluster, size, "fill")
                work = init_work_tree(base / "work")
                commit_file(work, "a.txt", "zero\n")
                run_git("push", "-q", cluster.git_url("proxy-1", "bench/push.git"), "main", cwd=work)
                push = push_latency(cluster, work, "bench/push.git")
                cpu = leader_idle_cpu(cluster)
                elections = raft_term(cluster) - term
                restart = restart_to_push(cluster, work, "bench/push.git")
                drained = drain_rate(cluster, backlog) if backlog else 0.0
            cells = [f"{size}", f"{rate:.1f}", f"{push:.0f}", f"{cpu:.1f}", f"{elections}", f"{restart:.2f}"]
            print(" | ".join([*cells, f"{drained:.1f}"]), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="metadata-only repository counts")
    parser.add_argument("--queue", type=int, default=100_000, help="jobs queued for lease+complete")
    parser.add_argument("--live", default="1000", help="live-cluster repository counts ('' = none)")
    parser.add_argument("--backlog", type=int, default=300, help="jobs in the drained backlog")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if sizes:
        metadata_section(sizes, args.queue)
    if args.live:
        live_section([int(s) for s in args.live.split(",") if s], args.backlog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
