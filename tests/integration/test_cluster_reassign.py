"""Re-assignment under writes on a real cluster (3 proxies, 4 nodes, replication factor 3).

A secondary's node stops while a client keeps pushing: the repository has 2 healthy
replicas; after `reassign_after` the leader's reconciler assigns the spare node (3
again), which gets the data by replication. When the stopped node returns, its replica
is deleted from its disk. Every acknowledged push is present at the end, and every
replica agrees.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster, commit_file, init_work_tree, run_git

SETTINGS = {
    **TEST_PROXY_SETTINGS,
    "replication_factor": 3,
    "reconcile_interval": 0.3,
    "reassign_after": 1.0,
}
PATH = "reassign/live.git"


class Pusher(threading.Thread):
    """Commits and pushes through proxy-1 until stopped; remembers what was acknowledged."""

    def __init__(self, cluster: LocalCluster, work: Path) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.work = work
        self.acknowledged: list[str] = []
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            n += 1
            sha = commit_file(self.work, "a.txt", f"push {n}\n")
            try:
                run_git("push", "-q", self.cluster.git_url("proxy-1", PATH), "main", cwd=self.work)
            except RuntimeError as exc:  # not acknowledged; the next push carries it anyway
                self.errors.append(str(exc)[-200:])
                continue
            self.acknowledged.append(sha)
            self.halt.wait(0.1)


def test_replica_moves_off_a_stopped_node_under_writes(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=4, proxy_settings=SETTINGS) as cluster:
        work = init_work_tree(tmp_path / "work")
        commit_file(work, "a.txt", "zero\n")
        run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
        repo = cluster.wait_converged(PATH).repository
        assigned = {r.storage for r in repo.replicas}
        assert len(assigned) == 3
        down = next(s for s in sorted(assigned) if s != repo.primary)
        spare = next(s for s in cluster.nodes if s not in assigned)
        old_replica = cluster.nodes[down].storage_path / repo.replica_path
        assert old_replica.is_dir()

        pusher = Pusher(cluster, work)
        pusher.start()
        try:
            cluster.stop(down)

            def moved() -> bool:
                now = cluster.repository(PATH)
                return now is not None and {r.storage for r in now.replicas} == assigned - {down} | {spare}

            cluster.wait_until(moved, timeout=60, what=f"replica moved from {down} to {spare}")
            cluster.wait_until(lambda: len(pusher.acknowledged) >= 3, timeout=60, what="pushes go on")
            cluster.start_process(down)
            cluster.wait_until(
                lambda: not old_replica.exists(), timeout=60, what=f"replica deleted on {down}"
            )
        finally:
            pusher.halt.set()
            pusher.join(60)

        converged = cluster.wait_converged(PATH, timeout=90)
        assert {r.storage for r in converged.repository.replicas} == assigned - {down} | {spare}
        assert converged.repository.replication_factor == 3
        assert pusher.acknowledged, pusher.errors
        clone = tmp_path / "clone"
        run_git("clone", "-q", "--bare", cluster.git_url("proxy-2", PATH), str(clone), cwd=tmp_path)
        head = run_git("rev-parse", "refs/heads/main", cwd=clone).stdout.strip()
        assert head == pusher.acknowledged[-1]
        for sha in pusher.acknowledged:
            run_git("merge-base", "--is-ancestor", sha, head, cwd=clone)
