"""Scale: what the metadata costs at 1k, 10k and 100k repositories, and a live cluster.

    .venv/bin/python -m bench scale_bench        (or: make bench)
    .venv/bin/python bench/scale_bench.py --sizes 1000,10000,100000 --live 100,10000

1. Metadata only (the state machine's commands applied directly to SQLite, as every
   proxy applies them, no Raft and no nodes), at each size in --sizes: the fill rate
   (create_repository + a write per repository, in batches), then the queries and
   commands whose cost must not grow with the repository count - an idle elector
   round (`failover_candidates`), an idle reconciler round (`outdated_without_job`,
   `recently_dead`), placement (`storage_counts`), ClusterStatus (`repository_count`,
   `job_counts`), DatalossCheck (`dataloss`), the replicator's `runnable_job_exists`
   - median of 20 each, and the write fences every `finish_write` / `complete_job`
   reads; the snapshot (SQLite backup) size and time; and, with
   --queue jobs ready (default 500k), `lease_jobs` (8 at a time) + `complete_job`
   p50/p99.
2. A live cluster (3 proxies, 3 nodes, real git/gRPC/Raft on 127.0.0.1) at each size in
   --live: repositories created through CreateRepository (16 in flight, one proxy),
   then, once the replication jobs the fill left are done (the time it took is printed:
   "idle" must mean idle): creation rate, small-push latency (median of 10), the Raft
   leader's CPU while idle (5 s), the Raft term at each step (a move is an election),
   the time from a full restart of the proxies to the first acknowledged push, the time
   node-b's death takes to move every primary it led (a third of them), and the
   drain rate of a backlog (on the largest cluster only): node-b and node-c are stopped while --backlog/2
   repositories are created (each leaves a job for both), then started together; jobs
   per second from their start until none waits, with a push every 0.5 s meanwhile and
   its replication lag, and the cluster's CPU per drained job.
3. --drain-only N: only that drain, on a fresh live cluster of N repositories.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosqlite

from bench import _scale_live as live
from cluster.metadata import fencing, queries, schema, statemachine
from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster, commit_file, init_work_tree, run_git

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


def fence_cost(machine: Machine, runs: int = 20) -> float:
    """Median ms of reading one repository's open write fences - what every
    `finish_write` and every `complete_job` of an update does (cluster.metadata.fencing),
    with every repository's closed intent still retained."""
    times = []
    for i in range(runs):
        began = time.perf_counter()
        fencing.open_fences(machine.conn, f"{i:032x}")
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


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
            costs["write fences"] = fence_cost(machine)
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


# Creates timed once a cluster holds its size (--at-size): the creation rate *at* that
# size (the fill's own rate averages over every size on the way, and its first second).
AT_SIZE_CREATES = 1000


def live_section(
    sizes: list[int], backlog: int, workers: int, per_target: int, creates: int = AT_SIZE_CREATES
) -> None:
    print("live cluster (3 proxies, 3 nodes, 127.0.0.1)", flush=True)
    header = [
        "repositories",
        "create/s (fill)",
        f"create/s at that size ({creates} more)",
        "queue empty after s",
        "push p50 ms",
        "leader idle CPU %",
        "Raft term: start/filled/settled/measured/caught up",
        "snapshot MiB",
        "snapshot s",
        "follower catch-up s",
        "restart to push s",
    ]
    drains: list[tuple[int, live.Drain]] = []
    print(" | ".join(header), flush=True)
    settings = {**TEST_PROXY_SETTINGS, "reconcile_exists_batch": 20}
    if workers:
        settings["replication_workers"] = workers
    if per_target:
        settings["replication_per_target"] = per_target
    with tempfile.TemporaryDirectory(prefix="gitraft-scale-live-") as tmp:
        for size in sizes:
            base = Path(tmp) / str(size)
            with LocalCluster(
                base / "cluster", proxies=3, nodes=3, proxy_settings=settings, start_timeout=600
            ) as cluster:
                cluster.wait_health({n: True for n in cluster.nodes}, timeout=120)
                terms = [live.raft_term(cluster)]
                rate = live.create_many(cluster, size, "fill")
                terms.append(live.raft_term(cluster))
                settle = live.wait_queue_empty(cluster)
                at_size, create_cpu = live.cpu_during(
                    cluster, lambda: live.create_many(cluster, creates, "more")
                )
                live.wait_queue_empty(cluster)
                per_create = {name: seconds * 1000 / creates for name, seconds in create_cpu.items()}
                print(
                    f"  CPU ms per create at {size}: {sum(per_create.values()):.1f} = "
                    + ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(per_create.items()) if ms >= 0.05),
                    flush=True,
                )
                terms.append(live.raft_term(cluster))
                work = init_work_tree(base / "work")
                commit_file(work, "a.txt", "zero\n")
                run_git("push", "-q", cluster.git_url("proxy-1", "bench/push.git"), "main", cwd=work)
                push = live.push_latency(cluster, work, "bench/push.git")
                cpu = live.leader_idle_cpu(cluster)
                mib, secs = live.snapshot_cost(cluster)
                terms.append(live.raft_term(cluster))
                catch_up = live.follower_catch_up(cluster)
                terms.append(live.raft_term(cluster))
                restart = live.restart_to_push(cluster, work, "bench/push.git")
                led, first, all_moved = live.node_failover(cluster)
                print(
                    f"  node-b stopped: the {led} primaries it led moved within {all_moved:.2f} s"
                    f" (the first after {first:.2f} s)",
                    flush=True,
                )
                cells = [
                    f"{size}",
                    f"{rate:.1f}",
                    f"{at_size:.1f}",
                    f"{settle:.1f}",
                    f"{push:.0f}",
                    f"{cpu:.1f}",
                ]
                cells += ["/".join(map(str, terms))]
                cells += [f"{mib:.1f}", f"{secs:.2f}", f"{catch_up:.2f}", f"{restart:.2f}"]
                print(" | ".join(cells), flush=True)
                if backlog and size == max(sizes):  # one drain, on the largest cluster
                    drains.append((size, live.backlog_drain(cluster, work, "bench/push.git", backlog)))
                    print_drains(drains[-1:])


def drain_section(
    size: int, backlog: int, workers: int, per_target: int, commits: bool = False, test_settings: bool = False
) -> None:
    """The backlog drain alone, on a fresh live cluster holding `size` repositories
    (created first, 32 in flight over the three proxies): no other live measurement.
    The proxies run with ProxyConfig's defaults, or with `test_settings` the tests'
    (TEST_PROXY_SETTINGS: health checks every 0.2 s, 5 s leases)."""
    settings: dict[str, Any] = dict(TEST_PROXY_SETTINGS) if test_settings else {}
    settings["reconcile_exists_batch"] = 20
    if workers:
        settings["replication_workers"] = workers
    if per_target:
        settings["replication_per_target"] = per_target
    print(f"backlog drain alone: {size} repositories, settings {settings}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="gitraft-scale-drain-") as tmp,
        LocalCluster(
            Path(tmp) / "cluster", proxies=3, nodes=3, proxy_settings=settings, start_timeout=600
        ) as cluster,
    ):
        cluster.wait_health({n: True for n in cluster.nodes}, timeout=120)
        if size:
            live.create_many(cluster, size, "fill", proxies=tuple(cluster.proxies), in_flight=32)
        work = init_work_tree(Path(tmp) / "work")
        commit_file(work, "a.txt", "zero\n")
        run_git("push", "-q", cluster.git_url("proxy-1", "bench/push.git"), "main", cwd=work)
        print_drains([(size, live.backlog_drain(cluster, work, "bench/push.git", backlog, commits))])


def print_drains(drains: list[tuple[int, live.Drain]]) -> None:
    if drains:
        print("backlog drain (node-b and node-c stopped while backlog/2 repositories are created,")
        print("then started; a push every 0.5 s through proxy-1 meanwhile, its lag = from its")
        print("acknowledgement until every replica has its generation)")
        print(
            "repositories | backlog jobs | drain s | jobs/s | pushes | lag p50 s | lag max s | failed | load"
        )
        for size, d in drains:
            cells = [f"{size}", f"{d.jobs}", f"{d.seconds:.1f}", f"{d.rate:.1f}", f"{d.pushes}"]
            cells += [f"{d.lag_p50:.2f}", f"{d.lag_max:.2f}", f"{d.failed_pushes}"]
            cells += [f"{d.load[0]:.1f}-{d.load[1]:.1f}", f"{d.cpu_ms_per_job:.1f}"]
            print(" | ".join(cells), flush=True)
            print(f"  Raft entries during the drain: {d.entries} ({d.entries / max(d.jobs, 1):.2f} per job)")
            print(f"  CPU stolen by the host meanwhile: {100 * d.steal:.1f}%")
            if d.checks:
                runs = d.checks.get("alone", 0.0) + d.checks.get("group", 0.0)
                print(
                    f"  copies checked on node-b and node-c: {d.checks.get('copies', 0.0):.0f} in"
                    f" {runs:.0f} git fsck runs ({d.checks.get('group', 0.0):.0f} of them for a group)"
                )
            print("  CPU s during the drain: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(d.cpu.items())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="metadata-only repository counts")
    parser.add_argument("--queue", type=int, default=500_000, help="jobs queued for lease+complete")
    parser.add_argument("--live", default="100,10000", help="live-cluster repository counts ('' = none)")
    parser.add_argument("--backlog", type=int, default=10_000, help="jobs in the drained backlog (0 = none)")
    parser.add_argument("--workers", type=int, default=0, help="replication_workers per proxy (0 = default)")
    parser.add_argument("--per-target", type=int, default=0, help="replication_per_target (0 = default)")
    parser.add_argument(
        "--at-size",
        type=int,
        default=AT_SIZE_CREATES,
        help="creates timed once a live cluster holds its size",
    )
    parser.add_argument(
        "--drain-only",
        type=int,
        default=-1,
        metavar="N",
        help="only the backlog drain, on a live cluster of N repositories (skips --sizes and --live)",
    )
    parser.add_argument(
        "--backlog-commits",
        action="store_true",
        help="with --drain-only: the backlog's repositories hold a commit (update jobs), not empty",
    )
    parser.add_argument(
        "--settings",
        choices=("default", "test"),
        default="default",
        help="with --drain-only: the proxies' settings, ProxyConfig defaults or TEST_PROXY_SETTINGS",
    )
    args = parser.parse_args()
    if args.drain_only >= 0:
        drain_section(
            args.drain_only,
            args.backlog,
            args.workers,
            args.per_target,
            args.backlog_commits,
            args.settings == "test",
        )
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if sizes:
        metadata_section(sizes, args.queue)
    if args.live:
        live_section(
            [int(s) for s in args.live.split(",") if s],
            args.backlog,
            args.workers,
            args.per_target,
            args.at_size,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
