"""Raft metadata store: commit latency, commands/s and failover time, 3 members on loopback.

    .venv/bin/python -m bench raft_bench        (or: make bench)

Starts three `cluster.testing.raft_member` processes (real pysyncobj, password set) and
measures, inside a member's own event loop (so no client round trip is counted), the
time from `await store.record_health(...)` to its return - committed by a majority and
applied to the local SQLite database:
- one command at a time, submitted at the leader and at a follower (p50/p99);
- many concurrent submitters at the leader (commands/s, p50/p99);
then, over several rounds, the time from SIGKILL of the leader to the next command
committed through a surviving member (which retries with the same command id), and
the cost of a snapshot (log compaction) of a database of ~130k rows, on the tick thread
and in the background.
Both append modes are measured: unbatched (our default, the write path) and batched.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pysyncobj import SERIALIZER_STATE

from cluster.metadata import schema, snapshot, statemachine
from cluster.testing.raft_cluster import MemberProcess, MetadataCluster
from common.errors import UnavailableError

SEQUENTIAL = 500
CONCURRENT = 4000
CONCURRENCY = 64
FAILOVER_ROUNDS = 5


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(label: str, run: dict[str, Any]) -> str:
    lat = [x * 1000 for x in run["latencies"]]
    rate = len(lat) / run["seconds"]
    return f"  {label:<34} p50 {pct(lat, 50):7.2f} ms   p99 {pct(lat, 99):7.2f} ms   {rate:8.0f} commands/s"


def throughput(workdir: Path, label: str, **raft: Any) -> None:
    with MetadataCluster(workdir / label, size=3, **raft) as cluster:
        cluster.start()
        leader = cluster.wait_for_leader()
        follower = next(m for m in cluster.members if m is not leader)
        leader.call("bench", count=200, concurrency=8, timeout=120)  # warm up
        print(f"{label}:")
        print(
            line(
                "sequential, at the leader",
                leader.call("bench", count=SEQUENTIAL, concurrency=1, timeout=300),
            )
        )
        print(
            line(
                "sequential, at a follower",
                follower.call("bench", count=SEQUENTIAL, concurrency=1, timeout=300),
            )
        )
        run = leader.call("bench", count=CONCURRENT, concurrency=CONCURRENCY, timeout=300)
        print(line(f"{CONCURRENCY} concurrent, at the leader", run))
        sys.stdout.flush()


def commit_after_kill(survivor: MemberProcess, name: str) -> float:
    """Seconds from now until `survivor` commits a command (retrying while unavailable)."""
    start = time.monotonic()
    while True:
        try:
            survivor.call("register_storage", name=name, address="x", timeout=60)
            return time.monotonic() - start
        except UnavailableError:
            if time.monotonic() - start > 60:
                raise


def failover(workdir: Path, **raft: Any) -> None:
    gaps: list[float] = []
    with MetadataCluster(workdir / "failover", size=3, **raft) as cluster:
        cluster.start()
        for i in range(FAILOVER_ROUNDS):
            leader = cluster.wait_for_leader()
            survivor = next(m for m in cluster.members if m is not leader)
            leader.kill()
            gaps.append(commit_after_kill(survivor, f"after-kill-{i}"))
            leader.start()
            cluster.wait_converged()
    print(f"SIGKILL of the leader -> next command committed at a survivor ({FAILOVER_ROUNDS} rounds):")
    print(
        f"  median {statistics.median(gaps) * 1000:.0f} ms   max {max(gaps) * 1000:.0f} ms   "
        f"all: {', '.join(f'{g * 1000:.0f}' for g in gaps)} ms"
    )


def snapshot_cost(work: Path, repositories: int = 30_000) -> None:
    """Cost of log compaction's snapshot: on the tick thread (pinning the state) and in
    the background (the SQLite copy)."""
    db = schema.connect(str(work / "big.db"))
    schema.create(db)
    cmds = [
        {
            "op": "create_repository",
            "cid": f"c{i}",
            "args": {
                "repository_id": f"r{i}",
                "relative_path": f"group/project-{i}.git",
                "replica_path": f"@cluster/{i:08x}.git",
                "storages": ["a", "b", "c"],
                "primary": "a",
                "replication_factor": 3,
                "now": 1.0,
            },
        }
        for i in range(repositories)
    ]
    for start in range(0, repositories, 500):
        batch = {"op": "batch", "commands": cmds[start : start + 500]}
        statemachine.apply(db, batch, 2 + start)
    rows = sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in schema.STATE_TABLES)
    snaps = snapshot.BackgroundSnapshots(work / "big.db", work / "big.dump")
    started = time.monotonic()
    snaps.serializer(str(work / "big.dump.tmp"), ((b"", 2, 1), (b"", 1, 1), []))
    stall = time.monotonic() - started
    while snaps.checker() == SERIALIZER_STATE.SERIALIZING:
        time.sleep(0.001)
    took = time.monotonic() - started
    db.close()
    print(
        f"snapshot of {rows} rows: tick thread blocked {stall * 1000:.1f} ms, "
        f"copy done in the background in {took * 1000:.0f} ms"
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="raft-bench-") as tmp:
        work = Path(tmp)
        print("3 members on 127.0.0.1, password set, RaftConfig defaults")
        print("(election timeout 0.4-1.0 s, heartbeat 0.05 s, leader fallback 1 s)")
        throughput(work, "unbatched appends (default)")
        throughput(work, "batched appends", batch_appends=True, heartbeat_interval=0.02)
        failover(work)
        snapshot_cost(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
