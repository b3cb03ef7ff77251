"""A repository creation whose primary moves while the node creates it (found by the
10,000-repository bench: a health flap under load made the elector move new
repositories' primaries mid-create). The client is told to retry; the retry must give
a usable repository - not one whose newest replica is a node that never created it.

Real cluster (3 proxies, 3 nodes). The move is the operator's SetPrimary while the
chosen primary is paused (SIGSTOP): slow health checks keep it "healthy" meanwhile, so
placement deterministically picks it and nothing else moves.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import grpc

from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster, commit_file, init_work_tree, run_git
from gitraft.v1 import cluster_pb2, repository_pb2, repository_pb2_grpc, shared_pb2

PATH = "fenced/create.git"
SLOW_HEALTH = {**TEST_PROXY_SETTINGS, "health_interval": 5.0, "health_timeout": 30.0}


def create(cluster: LocalCluster) -> grpc.RpcError | None:
    stub = repository_pb2_grpc.RepositoryServiceStub(cluster.channel("proxy-1"))
    request = repository_pb2.CreateRepositoryRequest(repository=shared_pb2.Repository(relative_path=PATH))
    try:
        stub.CreateRepository(request, metadata=cluster.metadata("proxy-1"), timeout=60)
    except grpc.RpcError as exc:
        return exc
    return None


def test_a_create_whose_primary_moved_meanwhile_can_be_retried(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3, proxy_settings=SLOW_HEALTH) as cluster:
        cluster.wait_health({"node-a": True, "node-b": True, "node-c": True})
        node_a = cluster.nodes["node-a"].process
        assert node_a is not None
        node_a.signal(signal.SIGSTOP)  # the first repository's primary is node-a (fewest, then name)
        outcome: list[grpc.RpcError | None] = []
        worker = threading.Thread(target=lambda: outcome.append(create(cluster)), daemon=True)
        try:
            worker.start()
            repo = cluster.wait_until(lambda: cluster.repository(PATH), 30, what="the metadata committed")
            assert repo.primary == "node-a"
            request = cluster_pb2.SetPrimaryRequest(relative_path=PATH, storage="node-b")
            cluster.cluster_stub("proxy-2").SetPrimary(
                request, metadata=cluster.metadata("proxy-2"), timeout=30
            )
        finally:
            node_a.signal(signal.SIGCONT)
        worker.join(90)
        (refused,) = outcome
        assert refused is not None and refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "retry" in (refused.details() or "")

        retried = create(cluster)  # what the client was told to do
        assert retried is None or retried.code() == grpc.StatusCode.ALREADY_EXISTS, retried
        work = init_work_tree(tmp_path / "work")
        oid = commit_file(work, "a.txt", "after the fenced create\n")
        run_git("push", "-q", cluster.git_url("proxy-1", PATH.removesuffix(".git")), "main", cwd=work)
        converged = cluster.wait_converged(PATH, timeout=60)
        assert sorted(converged.checksums) == ["node-a", "node-b", "node-c"]
        for storage in converged.checksums:
            bare = cluster.layout.node(storage).storage_path / converged.repository.replica_path
            assert run_git("rev-parse", "refs/heads/main", cwd=bare).stdout.strip() == oid
