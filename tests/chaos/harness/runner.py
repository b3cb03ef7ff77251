"""One chaos run: a cluster behind relays, the workloads, the nemesis, then healing and
every checker; returns a `Report`.

    report = run(tmp_path, RunConfig(seed=7, seconds=30, kinds=GROUPS["pause"]))
    assert report.ok, report.failure_text()

The same seed gives the same nemesis schedule and the same client choices (thread
timing is not reproducible). `Report.failure_text()` prints the seed, the schedule, the
anomalies and the history around each.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.testing import LocalCluster, commit_file, init_work_tree, run_git
from gitraft.v1 import ref_pb2, ref_pb2_grpc, shared_pb2
from tests.chaos.harness.checkers import Anomaly
from tests.chaos.harness.checkers.convergence import converged, fsck, leaked_processes
from tests.chaos.harness.checkers.linear import linearizable
from tests.chaos.harness.checkers.metadata import MetadataObserver, agreement
from tests.chaos.harness.checkers.reads import monotonic_tips, stale_reads
from tests.chaos.harness.checkers.writes import lost_writes
from tests.chaos.harness.history import OK, History
from tests.chaos.harness.nemesis import ALL_KINDS, Fault, Nemesis, schedule
from tests.chaos.harness.topology import ChaosCluster
from tests.chaos.harness.workloads import (
    BranchWriter,
    CasClient,
    CommitGraph,
    Reader,
    SharedWriter,
    Target,
    Workload,
)

CHECKERS = ("stale-read", "monotonic", "lost-write", "linearizable", "convergence", "metadata")


@dataclass
class RunConfig:
    seed: int = 1
    seconds: float = 30.0
    kinds: tuple[str, ...] = ALL_KINDS
    writers: int = 3
    shared_writers: int = 2
    readers: int = 2
    cas_clients: int = 3
    cas_values: int = 4
    # Seconds (at most) a writer waits between two pushes; longer lets replication
    # catch up, so a paused primary can fail over (the elector needs an up-to-date
    # replica) while a write to it is in flight.
    think: float = 0.2
    heal_timeout: float = 120.0
    path: str = "chaos/repo"
    proxy_settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    config: RunConfig
    faults: list[Fault]
    applied: list[str]
    history: History
    anomalies: dict[str, list[Anomaly]]
    figures: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not any(self.anomalies.values())

    def summary(self) -> str:
        counts = self.history.counts()
        acked = sum(1 for op in self.history.by_kind("push") if op.outcome == OK)
        cas_acked = sum(1 for op in self.history.by_kind("cas", "cas-write") if op.outcome == OK)
        per_checker = ", ".join(f"{c}={len(self.anomalies.get(c, []))}" for c in CHECKERS)
        return (
            f"seed={self.config.seed} seconds={self.config.seconds:g} faults injected={len(self.applied)}"
            f" operations={sum(sum(v.values()) for v in counts.values())} acknowledged pushes={acked}"
            f" acknowledged register writes={cas_acked}\n"
            f"operations by kind and outcome: {counts}\n"
            f"anomalies: {per_checker}\nfigures: {self.figures}"
        )

    def failure_text(self) -> str:
        lines = [
            f"CHAOS FAILURE - reproduce with CHAOS_SEED={self.config.seed} (kinds {self.config.kinds})",
            self.summary(),
            "nemesis schedule (applied):",
            *[f"  {a}" for a in self.applied],
            "anomalies:",
        ]
        shown = 0
        for checker in CHECKERS:
            for anomaly in self.anomalies.get(checker, []):
                lines.append(f"  {anomaly}")
                if anomaly.op_ids and shown < 5:
                    shown += 1
                    lines.append(self.history.around(anomaly.op_ids))
        return "\n".join(lines)


def _replica_branches(cluster: LocalCluster, relative_path: str) -> dict[str, dict[str, str]]:
    """{storage: {branch: commit}} of every assigned replica, asked of each node."""
    # Generous deadlines: a check after healing, not a latency bound (5 s ran out at load 45).
    repo = cluster.repository(relative_path, timeout=30.0)
    assert repo is not None, f"the cluster does not know {relative_path!r}"
    out: dict[str, dict[str, str]] = {}
    for replica in repo.replicas:
        stub = ref_pb2_grpc.RefServiceStub(cluster.channel(replica.storage))
        request = ref_pb2.ListRefsRequest(
            repository=shared_pb2.Repository(storage_name=replica.storage, relative_path=repo.replica_path),
            patterns=["refs/heads/"],
        )
        pages = stub.ListRefs(request, metadata=cluster.metadata(replica.storage), timeout=30)
        out[replica.storage] = {
            r.name.removeprefix("refs/heads/"): r.target for page in pages for r in page.refs
        }
    return out


def _seed(cluster: LocalCluster, root: Path, config: RunConfig, graph: CommitGraph) -> list[str]:
    """Push `main` and a pool of commits (the register's values); returns the pool."""
    work = init_work_tree(root / "seed")
    parent = ""
    for i in range(1 + config.cas_values):
        commit = commit_file(work, "seed.txt", f"seed {i}\n", f"seed {i}")
        graph.add(commit, parent)
        parent = commit
    pool = run_git("rev-list", "HEAD", cwd=work).stdout.split()[: config.cas_values]
    run_git("push", "-q", cluster.git_url("proxy-1", config.path), "main", "main:refs/heads/shared", cwd=work)
    cluster.wait_converged(config.path, timeout=120)
    return pool


def run(workdir: Path, config: RunConfig, chaos: ChaosCluster | None = None) -> Report:
    """Run the workloads under the nemesis for `config.seconds`, heal, check everything.

    Without `chaos`, the run starts its own ChaosCluster and stops it before the last
    check (no process of the cluster left running). With a started `chaos` (shared by
    several runs, each on its own `config.path`; `config.proxy_settings` is then
    ignored), the run leaves it healed and running: its owner checks for leftover
    processes once it stops it (`leaked_processes`)."""
    faults = schedule(config.seed, config.seconds, config.kinds)
    graph = CommitGraph()
    anomalies: dict[str, list[Anomaly]] = {c: [] for c in CHECKERS}
    figures: dict[str, Any] = {}
    owned = chaos is None
    if chaos is None:
        chaos = ChaosCluster(workdir / "cluster", seed=config.seed, proxy_settings=config.proxy_settings)
    else:
        chaos.net.rng.seed(config.seed)  # the relay's random choices follow this run's seed
    root = chaos.cluster.layout.root
    history = History()
    nemesis: Nemesis | None = None
    with chaos if owned else contextlib.nullcontext(chaos):
        cluster = chaos.cluster
        pool = _seed(cluster, workdir, config, graph)
        repo = cluster.repository(config.path)
        assert repo is not None
        target = Target(
            proxies=sorted(cluster.proxies),
            git_url=lambda p: cluster.git_url(p, config.path),
            grpc_address=lambda p: cluster.proxies[p].address,
            token=cluster.token,
            relative_path=repo.relative_path,
        )
        clients = workdir / "clients"
        stop_clients, stop_nemesis, stop_observer = threading.Event(), threading.Event(), threading.Event()
        observer = MetadataObserver(
            {p.name: p.data_dir / "raft" / "state.db" for p in cluster.layout.proxies}, stop_observer
        )
        workloads: list[Workload] = []
        seed = config.seed * 1000
        for i in range(config.writers):
            name = f"writer-{i}"
            run_git("clone", "-q", cluster.git_url("proxy-1", config.path), str(clients / name), cwd=workdir)
            workloads.append(
                BranchWriter(
                    name,
                    history,
                    target,
                    seed + len(workloads),
                    stop_clients,
                    config.think,
                    work=clients / name,
                    graph=graph,
                )
            )
        for i in range(config.shared_writers):
            name = f"shared-{i}"
            run_git("clone", "-q", cluster.git_url("proxy-1", config.path), str(clients / name), cwd=workdir)
            workloads.append(
                SharedWriter(
                    name,
                    history,
                    target,
                    seed + len(workloads),
                    stop_clients,
                    config.think,
                    work=clients / name,
                    graph=graph,
                )
            )
        for i in range(config.readers):
            name = f"reader-{i}"
            work = init_work_tree(clients / name)
            workloads.append(Reader(name, history, target, seed + len(workloads), stop_clients, work=work))
        history.t0 = time.monotonic()
        for i in range(config.cas_clients):
            workloads.append(
                CasClient(
                    f"cas-{i}",
                    history,
                    target,
                    seed + len(workloads),
                    stop_clients,
                    config.think,
                    values=pool,
                    start=history.t0,
                )
            )
        nemesis = Nemesis(chaos, faults, history, config.path, stop_nemesis)
        observer.start()
        for w in workloads:
            w.start()
        nemesis.start()
        try:
            stop_nemesis.wait(config.seconds)
        finally:
            stop_nemesis.set()
            nemesis.join(timeout=300)
            stop_clients.set()
            for w in workloads:
                w.join(timeout=180)
        crashed = [f"{w.client}: {w.crash!r}" for w in workloads if w.crash is not None]
        if nemesis.crash is not None:
            crashed.append(f"nemesis: {nemesis.crash!r}")
        if crashed:
            anomalies["convergence"].append(Anomaly("convergence", f"harness threads crashed: {crashed}"))
        if nemesis.failed_restarts:
            anomalies["convergence"].append(
                Anomaly("convergence", f"processes that did not start again: {nemesis.failed_restarts}")
            )
        healed = time.monotonic()
        replicas: dict[str, dict[str, str]] = {}
        try:
            found, took = converged(cluster, config.path, config.heal_timeout)
            anomalies["convergence"] += found
            figures["converged_after_s"] = round(took, 2)
            # Every proxy is read once more after healing (stale reads after convergence).
            for proxy in sorted(cluster.proxies):
                op = history.invoke("final", "read", proxy, via="ls-remote")
                done = run_git(
                    "ls-remote", "--heads", target.git_url(proxy), cwd=workdir, check=False, timeout=60
                )
                if done.returncode == 0:
                    seen = {}
                    for line in done.stdout.splitlines():
                        oid, _, ref = line.partition("\t")
                        seen[ref.removeprefix("refs/heads/")] = oid
                    history.complete(op, OK, value=seen)
                else:
                    history.complete(op, "unknown", error=done.stderr[-300:])
                    anomalies["convergence"].append(
                        Anomaly("convergence", f"read via {proxy} failed after healing", [op.id])
                    )
            replicas = _replica_branches(cluster, config.path)
            anomalies["convergence"] += fsck(cluster, config.path)
            # Metadata: sample until every proxy was seen at one index after healing.
            deadline = time.monotonic() + 30
            before = {i for i, by in observer.observations.items() if len(by) == len(cluster.proxies)}
            while time.monotonic() < deadline:
                observer.sample()
                now = {i for i, by in observer.observations.items() if len(by) == len(cluster.proxies)}
                if now - before:
                    break
                time.sleep(0.05)
        except Exception as exc:
            anomalies["convergence"].append(Anomaly("convergence", f"final checks failed: {exc!r}"[:2000]))
        finally:
            stop_observer.set()
            observer.join(timeout=30)
        figures["heal_to_checks_s"] = round(time.monotonic() - healed, 2)
    if owned:
        anomalies["convergence"] += leaked_processes(root)
    ops = history.snapshot()
    anomalies["stale-read"] = stale_reads(ops, graph)
    anomalies["monotonic"] = monotonic_tips(ops, graph)
    anomalies["lost-write"] = lost_writes(ops, graph, replicas)
    linear, linear_figures = linearizable(ops)
    anomalies["linearizable"] = linear
    anomalies["metadata"] = agreement(observer)
    figures["register"] = linear_figures
    figures["metadata_indices_compared"] = observer.compared()
    figures["relay_connections"] = chaos.net.connections
    figures["relay_resets"] = chaos.net.resets
    history.save(workdir / "history.jsonl")
    return Report(config, faults, nemesis.applied if nemesis else [], history, anomalies, figures)
