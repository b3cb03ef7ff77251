"""Background repair on a real cluster (3 proxies, 3 nodes, real git and Raft):

- the background verifier (no RPC) finds a ref changed by hand on a secondary and the
  replica is repaired; the leader's mismatch counter shows it;
- a proxy SIGKILLed while it holds a lease (its ReplicateRepository hangs on a
  SIGSTOPped node): once the lease expires another proxy completes the job.

A node that is SIGSTOPped must stay healthy for the cluster here (the job must be
leased while the node hangs), hence the very high health failure threshold.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster, commit_file, init_work_tree, run_git
from gitraft.v1 import cluster_pb2, ref_pb2, ref_pb2_grpc, shared_pb2

SETTINGS = {
    **TEST_PROXY_SETTINGS,
    "lease_seconds": 3.0,
    "health_failure_threshold": 100000,
    "reconcile_interval": 0.3,
    "verify_interval": 2.0,
    "verify_tick": 0.3,
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("background-repair")
    with LocalCluster(workdir / "cluster", proxies=3, nodes=3, proxy_settings=SETTINGS) as c:
        yield c


def pushed(cluster: LocalCluster, tmp_path: Path, path: str) -> tuple[Path, cluster_pb2.ClusterRepository]:
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "a.txt", "one\n")
    run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work)
    return work, cluster.wait_converged(path).repository


def counter(cluster: LocalCluster, name: str) -> float:
    total = 0.0
    for proxy in cluster.alive_proxies():
        for sample, _labels, value in cluster.proxies[proxy].metrics():
            if sample == name:
                total += value
    return total


def test_background_verifier_repairs_a_ref_changed_by_hand(cluster: LocalCluster, tmp_path: Path) -> None:
    path = "background/tampered.git"
    _, repo = pushed(cluster, tmp_path, path)
    secondary = next(r.storage for r in repo.replicas if r.storage != repo.primary)
    expected = cluster.replica_checksum(repo.primary, repo.replica_path)
    git_dir = cluster.nodes[secondary].storage_path / repo.replica_path
    before = counter(cluster, "gitraft_verifier_mismatches_total")
    subprocess.run(["git", "update-ref", "-d", "refs/heads/main"], cwd=git_dir, check=True)
    assert cluster.replica_checksum(secondary, repo.replica_path) != expected

    cluster.wait_until(
        lambda: cluster.replica_checksum(secondary, repo.replica_path) == expected,
        timeout=60,
        what=f"{secondary} repaired by the background verifier",
    )
    assert counter(cluster, "gitraft_verifier_mismatches_total") > before
    # the primary and the untouched replica went to the next generation (no generation goes down)
    assert cluster.wait_converged(path).generation == repo.generation + 1


def test_jobs_of_a_killed_proxy_are_completed_by_another(cluster: LocalCluster, tmp_path: Path) -> None:
    path = "background/lease.git"
    work, repo = pushed(cluster, tmp_path, path)
    secondary = next(r.storage for r in repo.replicas if r.storage != repo.primary)
    node = cluster.nodes[secondary].process
    assert node is not None
    pid = node.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # A gRPC mutator goes to the primary only (a git push through the gateway may
        # also read, and a read could be routed to the stopped node and hang).
        head = run_git("rev-parse", "HEAD", cwd=work).stdout.strip()
        update = ref_pb2.ReferenceUpdate(ref="refs/heads/second", old_oid="0" * 40, new_oid=head)
        ref_pb2_grpc.RefServiceStub(cluster.channel("proxy-1")).UpdateReferences(
            ref_pb2.UpdateReferencesRequest(
                repository=shared_pb2.Repository(relative_path=path), updates=[update]
            ),
            metadata=cluster.metadata("proxy-1"),
            timeout=30,
        )

        def held() -> cluster_pb2.ReplicationJob | None:
            for job in cluster.jobs(states=["in_progress"]):
                if job.relative_path == path and job.target == secondary and job.lease_owner:
                    return job
            return None

        job = cluster.wait_until(held, timeout=30, what="a job leased for the stopped node")
        cluster.kill(job.lease_owner)
        cluster.wait_for_leader(exclude=[job.lease_owner])
    finally:
        os.kill(pid, signal.SIGCONT)

    def finished() -> cluster_pb2.ReplicationJob | None:
        for j in cluster.jobs():
            if j.id == job.id and j.state == "completed":
                return j
        return None

    done = cluster.wait_until(finished, timeout=60, what=f"job {job.id} completed by another proxy")
    assert done.attempts >= job.attempts + 1  # re-leased after the dead owner's lease expired
    converged = cluster.wait_converged(path)
    assert converged.generation == repo.generation + 1
