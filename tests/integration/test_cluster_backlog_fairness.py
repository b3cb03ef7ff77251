"""A backlog for a stopped node does not starve the replication of the live ones (#11),
on a real cluster (3 proxies, 3 nodes, real git, real Raft).

node-c is stopped; 1,000 repositories are created through the three proxies, each
leaving a `create` job for node-c that cannot run. Meanwhile and afterwards, the jobs
for the live secondary keep completing: every new repository's replica on node-b is
created, and pushes to another repository reach node-b, while the 1,000 jobs still
wait for node-c (none leased, none dead: a stopped node's jobs keep their attempts).
The drain *rate*, and the drain of the stopped node's backlog once it is back, are
measured by `bench/scale_bench.py`, not here.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster, commit_file, init_work_tree, run_git
from common.auth import bearer_metadata
from gitraft.v1 import cluster_pb2, repository_pb2, repository_pb2_grpc, shared_pb2

BACKLOG = 1000
SETTINGS = {**TEST_PROXY_SETTINGS, "replication_workers": 4}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("backlog-fairness")
    with LocalCluster(workdir / "cluster", proxies=3, nodes=3, proxy_settings=SETTINGS) as c:
        yield c


def create_repositories(cluster: LocalCluster, count: int, prefix: str) -> None:
    """CreateRepository `count` times, 16 in flight spread over the three proxies."""
    stubs = [repository_pb2_grpc.RepositoryServiceStub(cluster.channel(p)) for p in cluster.proxies]
    md = bearer_metadata(cluster.token)

    def one(i: int) -> None:
        repo = shared_pb2.Repository(relative_path=f"{prefix}/r{i}.git")
        stubs[i % len(stubs)].CreateRepository(
            repository_pb2.CreateRepositoryRequest(repository=repo), metadata=md, timeout=120
        )

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


def waiting(cluster: LocalCluster, target: str) -> list[cluster_pb2.ReplicationJob]:
    request = cluster_pb2.ListReplicationJobsRequest(states=["ready", "failed", "in_progress"], limit=100_000)
    resp = cluster.cluster_stub("proxy-1").ListReplicationJobs(
        request, metadata=cluster.metadata("proxy-1"), timeout=30
    )
    return [j for j in resp.jobs if j.target == target]


def replica_generation(cluster: LocalCluster, path: str, storage: str) -> tuple[int, int]:
    """(the repository's generation, `storage`'s replica generation)."""
    repo = cluster.repository(path, timeout=10)
    assert repo is not None
    return int(repo.generation), next(int(r.generation) for r in repo.replicas if r.storage == storage)


def test_live_nodes_drain_behind_1000_jobs_for_a_stopped_one(cluster: LocalCluster, tmp_path: Path) -> None:
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "a.txt", "zero\n")
    path = "fair/live.git"
    run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work)
    cluster.wait_converged(path)

    cluster.stop("node-c")
    cluster.wait_health({"node-c": False}, timeout=60)
    create_repositories(cluster, BACKLOG, "fair/backlog")

    # Every job for the live secondary completes although 1,000 wait for node-c.
    cluster.wait_until(lambda: not waiting(cluster, "node-b"), 300, what="node-b's jobs drained")
    stuck = waiting(cluster, "node-c")
    assert len(stuck) >= BACKLOG
    assert {j.state for j in stuck} == {"ready"} and max(j.attempts for j in stuck) == 0

    # New writes still replicate to the live secondary, the backlog untouched.
    for i in range(3):
        commit_file(work, "a.txt", f"push {i}\n")
        run_git("push", "-q", cluster.git_url(f"proxy-{i + 1}", path), "main", cwd=work)
        repo = cluster.repository(path, timeout=10)
        assert repo is not None
        live_secondary = next(r.storage for r in repo.replicas if r.storage not in (repo.primary, "node-c"))

        def caught_up(storage: str = live_secondary) -> bool:
            generation, replica = replica_generation(cluster, path, storage)
            return replica == generation

        cluster.wait_until(caught_up, 120, what=f"push {i} replicated to {live_secondary}")
    assert len(waiting(cluster, "node-c")) >= BACKLOG
