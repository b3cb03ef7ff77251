"""Accessors are never served by an outdated replica (invariant 2), measured, not assumed.

A secondary's node is stopped, the repository is written through a proxy, and reads go
through every proxy (git fetch/ls-remote over HTTP and gRPC accessors). The proxies'
`gitraft_proxy_reads_total{storage=...}` counters show that no read reached the held-back
secondary, neither while its node is down nor after it returns while the metadata still
calls it outdated. Once it has caught up, reads do reach it again: the counters measure
something.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster.testing import LocalCluster, commit_file, init_work_tree, remote_refs, run_git
from common.auth import bearer_metadata
from gitraft.v1 import ref_pb2, ref_pb2_grpc, repository_pb2, repository_pb2_grpc, shared_pb2

PATH = "group/held-back.git"  # as the git gateway names it


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3) as c:
        yield c


def read_everywhere(cluster: LocalCluster, work: Path, rounds: int = 2) -> None:
    """Accessors through every live proxy: git ls-remote, git fetch, gRPC calls."""
    for _ in range(rounds):
        for name in cluster.alive_proxies():
            remote_refs(cluster.git_url(name, PATH), work)
            run_git("fetch", "-q", cluster.git_url(name, PATH), "main", cwd=work)
            repo = shared_pb2.Repository(relative_path=PATH)
            metadata = bearer_metadata(cluster.token)
            ref_pb2_grpc.RefServiceStub(cluster.channel(name)).FindDefaultBranch(
                ref_pb2.FindDefaultBranchRequest(repository=repo), metadata=metadata, timeout=10
            )
            repository_pb2_grpc.RepositoryServiceStub(cluster.channel(name)).RepositoryChecksum(
                repository_pb2.RepositoryChecksumRequest(repository=repo), metadata=metadata, timeout=10
            )


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(before) | set(after)}


def is_outdated(cluster: LocalCluster, storage: str) -> bool:
    repo = cluster.repository(PATH)
    assert repo is not None
    replica = next(r for r in repo.replicas if r.storage == storage)
    return replica.generation < repo.generation


def test_no_accessor_is_served_by_a_held_back_secondary(cluster: LocalCluster, tmp_path: Path) -> None:
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "a.txt", "one\n")
    run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
    repo = cluster.wait_converged(PATH).repository
    held_back = next(r.storage for r in repo.replicas if r.storage != repo.primary)

    cluster.stop(held_back)
    cluster.wait_health({held_back: False})
    for i in range(3):
        commit_file(work, "a.txt", f"change {i}\n")
        run_git("push", "-q", cluster.git_url(f"proxy-{i % 3 + 1}", PATH), "main", cwd=work)
    assert is_outdated(cluster, held_back)

    before = cluster.read_counts()
    read_everywhere(cluster, work)
    down = delta(before, cluster.read_counts())
    assert down.get(held_back, 0.0) == 0.0, f"reads served by the stopped, outdated {held_back}: {down}"
    assert sum(down.values()) > 0, f"no reads counted at all: {down}"

    # Back, but outdated until replication catches up: a read that ends while the
    # metadata still calls it outdated was routed while it was outdated (generations
    # never decrease), so it must not have been served by it.
    cluster.start_process(held_back)
    outdated_reads = 0
    for _ in range(20):
        before = cluster.read_counts()
        read_everywhere(cluster, work, rounds=1)
        after = cluster.read_counts()
        if not is_outdated(cluster, held_back):
            break
        outdated_reads += 1
        d = delta(before, after)
        assert d.get(held_back, 0.0) == 0.0, f"reads served by outdated {held_back}: {d}"

    converged = cluster.wait_converged(PATH)
    assert held_back in converged.checksums
    # Up to date again: read distribution reaches it (so the counters above were live).
    before = cluster.read_counts()
    for _ in range(15):
        read_everywhere(cluster, work, rounds=1)
        if delta(before, cluster.read_counts()).get(held_back, 0.0) > 0:
            break
    final = delta(before, cluster.read_counts())
    assert final.get(held_back, 0.0) > 0, (
        f"no read reached {held_back} once up to date ({outdated_reads} rounds while outdated): {final}"
    )


def test_reads_are_refused_when_no_up_to_date_replica_is_healthy(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """The only up-to-date replica gone: reads are refused with an error that names it,
    never answered from the outdated replicas (invariant 4)."""
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "a.txt", "one\n")
    run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
    repo = cluster.wait_converged(PATH).repository
    primary = repo.primary
    secondaries = [r.storage for r in repo.replicas if r.storage != primary]
    for name in secondaries:
        cluster.stop(name)
    cluster.wait_health(dict.fromkeys(secondaries, False))
    commit_file(work, "a.txt", "two\n")
    run_git("push", "-q", cluster.git_url("proxy-2", PATH), "main", cwd=work)
    cluster.stop(primary)
    for name in secondaries:
        cluster.start_process(name)
    cluster.wait_health({primary: False, **dict.fromkeys(secondaries, True)})
    for proxy in cluster.alive_proxies():
        done = run_git("ls-remote", cluster.git_url(proxy, PATH), cwd=work, check=False)
        assert done.returncode != 0, f"read served via {proxy} without an up-to-date replica: {done.stdout}"
        stub = ref_pb2_grpc.RefServiceStub(cluster.channel(proxy))
        request = ref_pb2.FindDefaultBranchRequest(repository=shared_pb2.Repository(relative_path=PATH))
        with pytest.raises(grpc.RpcError) as info:
            stub.FindDefaultBranch(request, metadata=bearer_metadata(cluster.token), timeout=10)
        assert primary in (info.value.details() or ""), info.value.details()
