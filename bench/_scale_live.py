"""Live-cluster measurements for `scale_bench` (3 proxies, 3 nodes, real git/gRPC/Raft).

Each function drives a running `LocalCluster` and returns figures; none asserts. The
stock git client pushes over smart HTTP; repositories are created with CreateRepository.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cluster.testing import LocalCluster, commit_file, run_git, scrape_metrics
from common.auth import bearer_metadata
from gitraft.v1 import cluster_pb2, repository_pb2, repository_pb2_grpc, shared_pb2

WAITING = ["ready", "failed", "in_progress"]
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION)


def create_many(
    cluster: LocalCluster,
    count: int,
    prefix: str,
    proxies: tuple[str, ...] = ("proxy-1",),
    in_flight: int = 16,
) -> float:
    """Create `count` repositories, `in_flight` at once spread over `proxies`; returns creates/s."""
    stubs = [repository_pb2_grpc.RepositoryServiceStub(cluster.channel(p)) for p in proxies]
    md = bearer_metadata(cluster.token)

    def one(i: int) -> None:
        repo = shared_pb2.Repository(relative_path=f"{prefix}/r{i}.git")
        request = repository_pb2.CreateRepositoryRequest(repository=repo)
        for attempt in range(5):  # as a client would: retry what the cluster says to retry
            try:
                stubs[i % len(stubs)].CreateRepository(request, metadata=md, timeout=120)
                done = next(created)
                if done % 1000 == 0:
                    rate = done / (time.monotonic() - began)
                    print(
                        f"  {prefix}: {done} created, {rate:.1f}/s so far, {os.getloadavg()[0]:.1f} load",
                        flush=True,
                    )
                return
            except grpc.RpcError as exc:
                if attempt and exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                    return
                if exc.code() not in RETRIED or attempt == 4:
                    raise
                retries.append(f"{exc.code().name}: {exc.details()}")
                time.sleep(0.5)

    retries: list[str] = []
    created = itertools.count(1)
    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(one, range(count)))
    took = time.monotonic() - began
    if retries:
        print(f"  ({len(retries)} creates retried, e.g. {retries[0]!r})", flush=True)
    return count / took


def wait_queue_empty(cluster: LocalCluster, timeout: float = 1800) -> float:
    """Seconds until no replication job waits (ready, failed or in progress): what a
    fill left for the secondaries is done, so "idle" below means idle."""
    began = time.monotonic()
    cluster.wait_until(lambda: _oldest_waiting(cluster) is None, timeout, what="replication queue empty")
    return time.monotonic() - began


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def push_latency(cluster: LocalCluster, work: Path, path: str, runs: int = 10) -> float:
    """Median ms of `runs` pushes of one small commit through proxy-1."""
    times = []
    for i in range(runs):
        commit_file(work, "a.txt", f"push {i} {time.time()}\n")
        began = time.monotonic()
        run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work)
        times.append(time.monotonic() - began)
    return statistics.median(times) * 1000


def leader_idle_cpu(cluster: LocalCluster, seconds: float = 5.0) -> float:
    """The Raft leader proxy's CPU % over `seconds` with no client traffic."""
    leader = cluster.wait_for_leader()
    process = cluster.proxies[leader].process
    assert process is not None and process.proc is not None
    pid = process.proc.pid
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds * 100


def raft_term(cluster: LocalCluster) -> int:
    leader = cluster.wait_for_leader()
    me = [p for p in cluster.cluster_status(leader).proxies if p.name == leader]
    return int(me[0].raft_term)


def snapshot_cost(cluster: LocalCluster) -> tuple[float, float]:
    """(MiB, seconds) of a SQLite backup of the leader's live state.db - the copy a
    snapshot makes (cluster.metadata.snapshot)."""
    leader = cluster.wait_for_leader()
    db = cluster.layout.proxy(leader).data_dir / "raft" / "state.db"
    with tempfile.TemporaryDirectory(prefix="gitraft-snap-") as tmp:
        target = Path(tmp) / "snapshot.db"
        began = time.monotonic()
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        dst = sqlite3.connect(str(target))
        src.backup(dst)
        dst.close()
        src.close()
        return target.stat().st_size / 2**20, time.monotonic() - began


def applied_index(cluster: LocalCluster, proxy: str) -> int:
    me = [p for p in cluster.cluster_status(proxy, timeout=10).proxies if p.name == proxy]
    return int(me[0].applied_index) if me else -1


def follower_catch_up(cluster: LocalCluster, writes: int = 200) -> float:
    """Stop a follower proxy, create `writes` repositories meanwhile, start it again;
    seconds from its start until it has applied the leader's index of that moment."""
    leader = cluster.wait_for_leader()
    follower = next(n for n in cluster.proxies if n != leader)
    cluster.stop(follower)
    create_many(cluster, writes, f"catchup-{time.monotonic_ns()}", proxies=(leader,))
    target = applied_index(cluster, leader)
    began = time.monotonic()
    cluster.start_process(follower, timeout=600)
    cluster.wait_until(lambda: applied_index(cluster, follower) >= target, 600, what=f"{follower} caught up")
    return time.monotonic() - began


def restart_to_push(cluster: LocalCluster, work: Path, path: str) -> float:
    """Seconds from a full restart of every proxy to the next acknowledged push."""
    for name in cluster.proxies:
        cluster.stop(name)
    began = time.monotonic()
    for name in cluster.proxies:
        cluster.proxies[name].spawn()
    for name in cluster.proxies:
        cluster.proxies[name].wait_serving(600)
    commit_file(work, "a.txt", f"after restart {time.time()}\n")
    while True:
        try:
            run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work, timeout=60)
            return time.monotonic() - began
        except RuntimeError:
            time.sleep(0.1)


def node_failover(cluster: LocalCluster, node: str = "node-b") -> tuple[int, float, float]:
    """`node` stopped (SIGTERM) with every node healthy and current: (primaries it led,
    seconds until the first moved, seconds until all had moved), from the stop; read
    from the proxies' gitraft_primary_changes_total{reason="failover"}. The node is
    started again and healthy on return."""
    request = cluster_pb2.ListClusterRepositoriesRequest()
    listed = cluster.cluster_stub("proxy-1").ListClusterRepositories(
        request, metadata=cluster.metadata("proxy-1"), timeout=120
    )
    led = sum(1 for repo in listed.repositories if repo.primary == node)

    def moved() -> float:
        return sum(
            value
            for spec in cluster.layout.proxies
            for sample, labels, value in scrape_metrics(spec.metrics_addr, timeout=10)
            if sample == "gitraft_primary_changes_total" and labels.get("reason") == "failover"
        )

    before = moved()
    began = time.monotonic()
    cluster.stop(node)
    first = 0.0
    while (done := moved() - before) < led:
        if done and not first:
            first = time.monotonic() - began
        if time.monotonic() - began > 600:
            raise RuntimeError(f"{done:.0f} of {led} primaries moved in 600 s")
        time.sleep(0.05)
    took = time.monotonic() - began
    cluster.nodes[node].spawn()
    cluster.nodes[node].wait_serving(600)
    cluster.wait_health({node: True}, timeout=120)
    return led, first or took, took


@dataclass
class PushStream:
    """Pushes one small commit through proxy-1 every `interval` s until stopped; for
    each acknowledged push, the seconds until every replica of the repository had its
    generation (the replication lag, polled every 0.1 s)."""

    cluster: LocalCluster
    work: Path
    path: str
    interval: float = 0.5
    lags: list[float] = field(default_factory=list)
    failed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _generations(self) -> tuple[int, list[int]]:
        repo = self.cluster.repository(self.path, proxy="proxy-1", timeout=10)
        assert repo is not None
        return int(repo.generation), [int(r.generation) for r in repo.replicas]

    def _run(self) -> None:
        pending: list[tuple[float, int]] = []  # (acknowledged at, generation then)
        next_push = time.monotonic()
        i = 0
        while not self.stop.is_set() or pending:
            now = time.monotonic()
            if now >= next_push and not self.stop.is_set():
                i += 1
                commit_file(self.work, "s.txt", f"stream {i} {time.time()}\n")
                url = self.cluster.git_url("proxy-1", self.path)
                done = run_git("push", "-q", url, "main", cwd=self.work, check=False)
                if done.returncode == 0:
                    pending.append((time.monotonic(), self._generations()[0]))
                else:
                    self.failed += 1
                next_push = time.monotonic() + self.interval
            if pending:
                _, replicas = self._generations()
                seen = time.monotonic()
                low = min(replicas)
                self.lags += [seen - acked for acked, g in pending if low >= g]
                pending = [(acked, g) for acked, g in pending if low < g]
            if self.stop.is_set() and pending and time.monotonic() - pending[0][0] > 600:
                return
            time.sleep(0.1)


def _oldest_waiting(cluster: LocalCluster) -> int | None:
    request = cluster_pb2.ListReplicationJobsRequest(states=WAITING, limit=1)
    resp = cluster.cluster_stub("proxy-1").ListReplicationJobs(
        request, metadata=cluster.metadata("proxy-1"), timeout=30
    )
    return int(resp.jobs[0].id) if resp.jobs else None


def _newest_job(cluster: LocalCluster) -> tuple[int, int]:
    """(highest job id, jobs waiting) now."""
    request = cluster_pb2.ListReplicationJobsRequest(states=WAITING, limit=1_000_000)
    resp = cluster.cluster_stub("proxy-1").ListReplicationJobs(
        request, metadata=cluster.metadata("proxy-1"), timeout=60
    )
    return max((int(j.id) for j in resp.jobs), default=0), len(resp.jobs)


def cpu_during(cluster: LocalCluster, work: Callable[[], float]) -> tuple[float, dict[str, float]]:
    """`work()`'s result and the CPU seconds each cluster process (and, as "<name>
    children", the git it reaped) spent meanwhile."""
    before = _cluster_cpu(cluster)
    result = work()
    after = _cluster_cpu(cluster)
    return result, {name: after[name] - before.get(name, 0.0) for name in after}


def _cluster_cpu(cluster: LocalCluster, without: tuple[str, ...] = ()) -> dict[str, float]:
    """CPU seconds used so far by each of the cluster's proxies and nodes (but
    `without`), and as "<name> children" by the children they reaped (the nodes' git)."""
    cpu: dict[str, float] = {}
    for name in [*cluster.proxies, *cluster.nodes]:
        process = cluster.process(name).process
        if name in without or process is None or process.proc is None:
            continue
        try:
            fields = Path(f"/proc/{process.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tick = os.sysconf("SC_CLK_TCK")
        cpu[name] = (int(fields[11]) + int(fields[12])) / tick
        cpu[f"{name} children"] = (int(fields[13]) + int(fields[14])) / tick
    return cpu


@dataclass
class Drain:
    jobs: int
    seconds: float
    pushes: int
    lag_p50: float
    lag_max: float
    failed_pushes: int
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average: lowest, highest seen
    cpu: dict[str, float] = field(default_factory=dict)  # CPU s during the drain, by process
    entries: int = 0  # Raft log entries applied during the drain (proxy-1's applied index)
    steal: float = 0.0  # share of the machine's CPU time the hypervisor gave elsewhere meanwhile
    # gitraft_node_copy_checks_total of node-b and node-c at the end: copies, alone, group
    checks: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        """The cluster's CPU time during the drain (the pushes' included)."""
        return sum(self.cpu.values())

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_job(self) -> float:
        """CPU the cluster spent per drained job: 2 cores / this is the rate a quiet
        2-core machine could reach at most."""
        return self.cpu_seconds / self.jobs * 1000 if self.jobs else 0.0


def push_many(cluster: LocalCluster, work: Path, paths: list[str], in_flight: int = 8) -> float:
    """Push `work`'s main to each of `paths`, `in_flight` at once over the three
    proxies (retried as a client would); returns pushes/s."""
    proxies = list(cluster.proxies)

    def one(i: int) -> None:
        url = cluster.git_url(proxies[i % len(proxies)], paths[i])
        for attempt in range(5):
            if run_git("push", "-q", url, "main", cwd=work, check=False).returncode == 0:
                return
            time.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"push to {paths[i]} failed 5 times")

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(one, range(len(paths))))
    return len(paths) / (time.monotonic() - began)


def backlog_drain(
    cluster: LocalCluster, work: Path, push_path: str, backlog: int, commits: bool = False
) -> Drain:
    """A backlog of about `backlog` jobs for small repositories: node-b and node-c are
    stopped while backlog/2 repositories are created (each leaves a job for both), then
    started; a push stream (PushStream) runs meanwhile. Returns the drain (backlog jobs /
    seconds from the nodes' start until none of them waits), the pushes' replication lag
    and the cluster's CPU time meanwhile.

    `commits` False: the repositories are new and empty (each job creates an empty
    replica). True: they are created with every node up (and replicated), then, with
    node-b and node-c stopped, each gets a push of one small commit (each job fetches
    it into an existing replica: a replication as after any push)."""
    down = ("node-b", "node-c")
    prefix = f"backlog-{time.monotonic_ns()}"
    count = max(1, backlog // 2)
    if commits:
        rate = create_many(cluster, count, prefix, proxies=tuple(cluster.proxies), in_flight=32)
        wait_queue_empty(cluster)
    for name in down:
        cluster.stop(name)
    cluster.wait_health(dict.fromkeys(down, False))
    if commits:
        content = work.parent / f"{prefix}-work"  # beside the stream's work tree
        content.mkdir()
        run_git("init", "-q", "-b", "main", str(content), cwd=content)
        commit_file(content, "README", "a small repository\n")
        pushed = push_many(cluster, content, [f"{prefix}/r{i}.git" for i in range(count)])
        print(f"  backlog: {count} repositories created at {rate:.1f}/s", flush=True)
        print(f"  then one commit pushed to each at {pushed:.1f}/s", flush=True)
    else:
        rate = create_many(cluster, count, prefix, proxies=tuple(cluster.proxies), in_flight=32)
        print(f"  backlog: {count} repositories created at {rate:.1f}/s", flush=True)
    last, waiting = _newest_job(cluster)
    stream = PushStream(cluster, work, push_path)
    # From the nodes' start (both at once): the drain includes their start-up, and their
    # CPU counts from their start.
    cpu_before = _cluster_cpu(cluster, without=down)
    index_before = applied_index(cluster, "proxy-1")
    steal_before = _steal_and_total()
    began = time.monotonic()
    for name in down:
        cluster.nodes[name].spawn()
    for name in down:
        cluster.nodes[name].wait_serving(600)
    print(f"  node-b and node-c serving {time.monotonic() - began:.1f} s after their start", flush=True)
    stream.thread.start()
    loads: list[float] = []
    try:
        while True:
            loads.append(os.getloadavg()[0])
            oldest = _oldest_waiting(cluster)
            if oldest is None or oldest > last:
                break
            time.sleep(0.5)
        took = time.monotonic() - began
        after = _cluster_cpu(cluster)
        entries = applied_index(cluster, "proxy-1") - index_before
        steal_after = _steal_and_total()
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in after.items()}
    finally:
        stream.stop.set()
        stream.thread.join(900)
    lags = sorted(stream.lags) or [0.0]
    load = (min(loads), max(loads))
    lag_p50 = statistics.median(lags)
    steal = (steal_after[0] - steal_before[0]) / max(1, steal_after[1] - steal_before[1])
    checks = copy_checks(cluster, down)
    return Drain(
        waiting, took, len(stream.lags), lag_p50, lags[-1], stream.failed, load, cpu, entries, steal, checks
    )


def copy_checks(cluster: LocalCluster, names: tuple[str, ...]) -> dict[str, float]:
    """gitraft_node_copy_checks_total{how} summed over the nodes `names` (their /metrics)."""
    totals: dict[str, float] = {}
    for spec in cluster.layout.nodes:
        if spec.name in names:
            for sample, labels, value in scrape_metrics(spec.metrics_addr, timeout=10):
                if sample == "gitraft_node_copy_checks_total":
                    totals[labels["how"]] = totals.get(labels["how"], 0.0) + value
    return totals


def _steal_and_total() -> tuple[int, int]:
    """The machine's (steal, total) CPU ticks so far (/proc/stat): a busy host slows
    every figure of a run, and this tells such a run apart."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7] if len(fields) > 7 else 0, sum(fields[:8])
