"""Replication factor 3 -> 2 -> 3 on a live repository while a stock git client pushes
to it through the gateway (issue #11's acceptance): the dropped replica is deleted on
its node's disk, then re-created there; the metadata stays consistent throughout (seen
by a watcher polling one proxy); at the end every assigned replica is at the
repository's generation, no job is left waiting, and every acknowledged push is on
every replica's disk.

The real cluster (3 proxies, 3 nodes), the real `gitraft set-replication-factor`, the
real `git push` over smart HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from cluster.testing import LocalCluster, commit_file, init_work_tree, run_git
from gitraft.v1 import cluster_pb2
from tests.integration.cli_helpers import Operator

PATH = "rf/live.git"
MAX_PUSHES = 400  # the loop is bounded whatever happens


class PushLoop:
    """Pushes a new commit to a new branch through proxy-1, one after another, until
    stopped or MAX_PUSHES; remembers every acknowledged push (git exited 0)."""

    def __init__(self, cluster: LocalCluster, work: Path) -> None:
        self.url = cluster.git_url("proxy-1", PATH.removesuffix(".git"))
        self.work = work
        self.acked: dict[str, str] = {}
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(MAX_PUSHES):
            if self.stop.is_set():
                return
            oid = commit_file(self.work, f"f{i}.txt", f"{i}\n")
            done = run_git("push", "-q", self.url, f"{oid}:refs/heads/push-{i}", cwd=self.work, check=False)
            if done.returncode == 0:
                self.acked[f"refs/heads/push-{i}"] = oid
            else:
                self.failures.append(done.stderr.strip())

    def wait_more(self, n: int, timeout: float = 60.0) -> None:
        want = len(self.acked) + n
        deadline = time.monotonic() + timeout
        while len(self.acked) < want:
            assert self.thread.is_alive(), f"push loop ended at {len(self.acked)}: {self.failures[-3:]}"
            assert time.monotonic() < deadline, f"pushes stalled at {len(self.acked)}: {self.failures[-3:]}"
            time.sleep(0.05)


class MetadataWatcher:
    """Polls the repository's metadata through one proxy (its applied state only moves
    forward) and records every inconsistency it sees: a primary that is not an assigned
    replica, a replication factor that is not the replica count, an unassigned replica
    listed, a replica's generation going down while it stays assigned, or the dropped
    storage coming back before the factor is raised again."""

    def __init__(self, cluster: LocalCluster, proxy: str = "proxy-2") -> None:
        self.cluster = cluster
        self.proxy = proxy
        self.problems: list[str] = []
        self.seen = 0
        self.dropped = ""  # the storage unassigned by 3 -> 2
        self.raised = threading.Event()  # set just before 2 -> 3 is asked
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        generations: dict[str, int] = {}
        dropped_seen_gone = False
        while not self.stop.wait(0.1):
            try:
                repo = self.cluster.repository(PATH, proxy=self.proxy, timeout=5.0)
            except grpc.RpcError:
                continue  # a slow answer on a loaded machine is no inconsistency
            if repo is None:
                self.problems.append("repository unknown")
                continue
            self.seen += 1
            self._check(repo, generations)
            storages = {r.storage for r in repo.replicas}
            if self.dropped and self.dropped not in storages:
                dropped_seen_gone = True
            if dropped_seen_gone and self.dropped in storages and not self.raised.is_set():
                self.problems.append(f"{self.dropped} assigned again before the factor was raised")

    def _check(self, repo: cluster_pb2.ClusterRepository, generations: dict[str, int]) -> None:
        replicas = {r.storage: r for r in repo.replicas}
        if repo.primary not in replicas:
            self.problems.append(f"primary {repo.primary} not among replicas {sorted(replicas)}")
        if repo.replication_factor != len(replicas):
            self.problems.append(f"replication factor {repo.replication_factor}, replicas {sorted(replicas)}")
        for storage, replica in replicas.items():
            before = generations.get(storage)
            if before is not None and replica.generation < before:
                self.problems.append(f"{storage} generation {before} -> {replica.generation}")
            generations[storage] = replica.generation
        for storage in set(generations) - set(replicas):
            del generations[storage]  # unassigned: a new assignment starts again at -1


def set_factor(op: Operator, n: int, timeout: float = 60.0) -> Any:
    """`gitraft set-replication-factor PATH n --json`; only "cluster unavailable" (exit
    3: e.g. a Raft command timed out on a loaded machine) is retried, as an operator
    would. Returns the answer."""
    deadline = time.monotonic() + timeout
    while True:
        done = op.run("set-replication-factor", PATH, str(n), "--json")
        if done.returncode == 0:
            return json.loads(done.stdout)
        assert done.returncode == 3, done.stderr
        assert time.monotonic() < deadline, f"set-replication-factor {n} kept failing: {done.stderr}"
        time.sleep(0.2)


def disk_refs(cluster: LocalCluster, storage: str, replica_path: str) -> dict[str, str]:
    """{ref: oid} of the bare repository on `storage`'s disk, read by git itself."""
    bare = cluster.layout.node(storage).storage_path / replica_path
    out = run_git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_replication_factor_3_2_3_under_writes(tmp_path: Path) -> None:
    t0 = time.monotonic()

    def mark(what: str) -> None:
        print(f"{time.monotonic() - t0:7.2f}s {what}", flush=True)

    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3) as cluster:
        op = Operator(cluster, tmp_path / "operator")
        work = init_work_tree(tmp_path / "work")
        commit_file(work, "README", "rf\n")
        run_git(
            "push",
            "-q",
            cluster.git_url("proxy-1", PATH.removesuffix(".git")),
            "HEAD:refs/heads/main",
            cwd=work,
        )
        mark("cluster up")
        first = cluster.wait_converged(PATH)
        mark("repo converged")
        replica_path = first.repository.replica_path

        loop = PushLoop(cluster, work)
        watcher = MetadataWatcher(cluster)
        loop.thread.start()
        watcher.thread.start()
        try:
            loop.wait_more(3)
            mark("3 pushes")
            down = set_factor(op, 2)
            mark("rf 2")
            assert down["repository"]["replication_factor"] == 2 and down["assigned"] == []
            (dropped,) = down["unassigned"]
            assert dropped != down["repository"]["primary"]
            watcher.dropped = dropped
            on_disk = cluster.layout.node(dropped).storage_path / replica_path
            began = time.monotonic()
            cluster.wait_until(lambda: not on_disk.exists(), 60, what=f"the replica on {dropped} deleted")
            print(f"replica on {dropped} deleted from disk {time.monotonic() - began:.2f}s after 3 -> 2")
            loop.wait_more(3)

            mark("3 more pushes")
            watcher.raised.set()
            up = set_factor(op, 3)
            mark("rf 3")
            assert up["assigned"] == [dropped] and up["unassigned"] == []
            began = time.monotonic()
            cluster.wait_until(on_disk.exists, 60, what=f"the replica on {dropped} re-created")
            print(f"replica on {dropped} re-created on disk {time.monotonic() - began:.2f}s after 2 -> 3")
            loop.wait_more(3)
            mark("3 more pushes")
        finally:
            loop.stop.set()
            loop.thread.join(120)
            watcher.stop.set()
            watcher.thread.join(30)
        assert not loop.thread.is_alive() and not watcher.thread.is_alive()
        print(f"{len(loop.acked)} pushes acknowledged, {len(loop.failures)} refused: {loop.failures[:3]}")
        print(f"{watcher.seen} metadata observations")
        assert watcher.seen > 10 and watcher.problems == []

        mark("loops stopped")
        converged = cluster.wait_converged(PATH)
        mark("converged")
        repo = converged.repository
        assert sorted(r.storage for r in repo.replicas) == ["node-a", "node-b", "node-c"]
        assert repo.replication_factor == 3
        assert all(r.generation == repo.generation for r in repo.replicas), repo
        waiting = ["ready", "in_progress", "failed", "dead"]

        def no_job_left() -> bool:
            request = cluster_pb2.ListReplicationJobsRequest(relative_path=PATH, states=waiting)
            resp = cluster.cluster_stub("proxy-3").ListReplicationJobs(
                request, metadata=cluster.metadata("proxy-3"), timeout=5.0
            )
            return not resp.jobs

        cluster.wait_until(no_job_left, 30, what="no job of the repository waiting, running or dead")
        refs = {s: disk_refs(cluster, s, replica_path) for s in ("node-a", "node-b", "node-c")}
        for storage, have in refs.items():
            missing = {ref: oid for ref, oid in loop.acked.items() if have.get(ref) != oid}
            assert not missing, f"acknowledged pushes missing on {storage}'s disk: {missing}"
        assert refs["node-a"] == refs["node-b"] == refs["node-c"]
        assert len(loop.acked) >= 9
