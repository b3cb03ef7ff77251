"""The routing proxy in a real cluster: 3 proxy processes (Raft over pysyncobj) and 3
node processes on 127.0.0.1, driven with the real git and gRPC clients.

The cluster is shared by the tests of this module; each test uses its own repository.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from cluster.testing import LocalCluster, commit_file, init_work_tree, remote_refs, run_git
from gitraft.v1 import (
    cluster_pb2,
    commit_pb2,
    commit_pb2_grpc,
    ref_pb2,
    ref_pb2_grpc,
    repository_pb2,
    repository_pb2_grpc,
    server_pb2,
    server_pb2_grpc,
    shared_pb2,
    transaction_pb2,
    transaction_pb2_grpc,
)

ZERO = "0" * 40
_names = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("proxy-cluster"), proxies=3, nodes=3) as c:
        yield c


def stub(cluster: LocalCluster, proxy: str, cls: Any) -> Any:
    return cls(cluster.channel(proxy))


def md(cluster: LocalCluster) -> tuple[tuple[str, str], ...]:
    return cluster.metadata("proxy-1")


def repo_msg(path: str) -> shared_pb2.Repository:
    return shared_pb2.Repository(relative_path=path)


def create(cluster: LocalCluster, proxy: str, path: str) -> None:
    stub(cluster, proxy, repository_pb2_grpc.RepositoryServiceStub).CreateRepository(
        repository_pb2.CreateRepositoryRequest(repository=repo_msg(path)), metadata=md(cluster), timeout=30
    )


def pushed_repo(cluster: LocalCluster, tmp_path: Path, proxy: str = "proxy-1") -> tuple[str, Path, str]:
    """Push a fresh work tree (two commits on main) through `proxy`'s gateway.

    Returns (relative path as the cluster names it, work tree, head commit)."""
    name = f"group/p{next(_names)}"
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "a.txt", "one\n")
    head = commit_file(work, "b.txt", "two\n")
    run_git("push", "-q", cluster.git_url(proxy, name), "main", cwd=work)
    return f"{name}.git", work, head


def test_push_through_one_proxy_clone_through_another(cluster: LocalCluster, tmp_path: Path) -> None:
    path, work, head = pushed_repo(cluster, tmp_path)

    clone = tmp_path / "clone"
    run_git("clone", "-q", cluster.git_url("proxy-2", path), str(clone), cwd=tmp_path)
    assert run_git("rev-parse", "HEAD", cwd=clone).stdout.strip() == head
    assert (clone / "b.txt").read_text() == "two\n"

    converged = cluster.wait_converged(path, timeout=60)
    assert len(converged.checksums) == 3
    assert converged.generation >= 1

    # A second push through a third proxy moves every replica forward again.
    newer = commit_file(work, "c.txt", "three\n")
    run_git("push", "-q", cluster.git_url("proxy-3", path), "main", cwd=work)
    again = cluster.wait_converged(path, timeout=60)
    assert again.generation > converged.generation
    assert remote_refs(cluster.git_url("proxy-1", path), cwd=tmp_path)["refs/heads/main"] == newer


def test_mutator_then_accessor_through_different_proxies(cluster: LocalCluster, tmp_path: Path) -> None:
    path, _work, head = pushed_repo(cluster, tmp_path)
    first = run_git("rev-parse", "HEAD~1", cwd=_work).stdout.strip()
    refs1 = stub(cluster, "proxy-1", ref_pb2_grpc.RefServiceStub)
    refs2 = stub(cluster, "proxy-2", ref_pb2_grpc.RefServiceStub)
    commits3 = stub(cluster, "proxy-3", commit_pb2_grpc.CommitServiceStub)

    for i in range(10):
        branch = f"refs/heads/topic-{i}"
        target = first if i % 2 else head
        refs1.UpdateReferences(
            ref_pb2.UpdateReferencesRequest(
                repository=repo_msg(path),
                updates=[ref_pb2.ReferenceUpdate(ref=branch, old_oid=ZERO, new_oid=target)],
            ),
            metadata=md(cluster),
            timeout=30,
        )
        listed = {
            r.name: r.target
            for page in refs2.ListRefs(
                ref_pb2.ListRefsRequest(repository=repo_msg(path)), metadata=md(cluster), timeout=30
            )
            for r in page.refs
        }
        assert listed.get(branch) == target, f"read {i} through proxy-2 missed the write through proxy-1"
        found = commits3.FindCommit(
            commit_pb2.FindCommitRequest(repository=repo_msg(path), revision=branch),
            metadata=md(cluster),
            timeout=30,
        )
        assert found.commit.id == target


def test_node_errors_reach_the_client_unchanged(cluster: LocalCluster, tmp_path: Path) -> None:
    path, _work, head = pushed_repo(cluster, tmp_path)
    before = cluster.wait_converged(path, timeout=60).repository
    refs = stub(cluster, "proxy-2", ref_pb2_grpc.RefServiceStub)
    bad = ref_pb2.UpdateReferencesRequest(
        repository=repo_msg(path),
        updates=[ref_pb2.ReferenceUpdate(ref="refs/heads/main", old_oid="1" * 40, new_oid=head)],
    )
    with pytest.raises(grpc.RpcError) as info:
        refs.UpdateReferences(bad, metadata=md(cluster), timeout=30)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # A refused write that changed nothing (the secondaries, all current, show it) leaves
    # the generation alone.
    after = cluster.repository(path)
    assert after is not None and after.generation == before.generation

    with pytest.raises(grpc.RpcError) as missing:
        refs.FindDefaultBranch(
            ref_pb2.FindDefaultBranchRequest(repository=repo_msg("group/never-created.git")),
            metadata=md(cluster),
            timeout=30,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "group/never-created.git" in (missing.value.details() or "")


def test_create_exists_remove_through_the_proxies(cluster: LocalCluster) -> None:
    path = f"grpc/r{next(_names)}.git"
    repos2 = stub(cluster, "proxy-2", repository_pb2_grpc.RepositoryServiceStub)
    exists = repository_pb2.RepositoryExistsRequest(repository=repo_msg(path))
    assert not repos2.RepositoryExists(exists, metadata=md(cluster), timeout=30).exists

    create(cluster, "proxy-1", path)
    assert repos2.RepositoryExists(exists, metadata=md(cluster), timeout=30).exists
    with pytest.raises(grpc.RpcError) as dup:
        create(cluster, "proxy-3", path)
    assert dup.value.code() == grpc.StatusCode.ALREADY_EXISTS

    meta = cluster.repository(path)
    assert meta is not None
    assert meta.replica_path.startswith("@cluster/") and meta.replica_path.endswith(
        f"{meta.repository_id}.git"
    )
    assert len(meta.replicas) == 3
    converged = cluster.wait_converged(path, timeout=60)
    assert converged.generation == 0

    repos2.RemoveRepository(
        repository_pb2.RemoveRepositoryRequest(repository=repo_msg(path)), metadata=md(cluster), timeout=30
    )
    assert not repos2.RepositoryExists(exists, metadata=md(cluster), timeout=30).exists
    assert cluster.repository(path) is None


def test_reads_are_spread_over_up_to_date_replicas(cluster: LocalCluster, tmp_path: Path) -> None:
    path, _work, _head = pushed_repo(cluster, tmp_path)
    cluster.wait_converged(path, timeout=60)
    before = cluster.proxies["proxy-2"].read_counts()
    info = stub(cluster, "proxy-2", repository_pb2_grpc.RepositoryServiceStub)
    for _ in range(30):
        info.RepositoryInfo(
            repository_pb2.RepositoryInfoRequest(repository=repo_msg(path)), metadata=md(cluster), timeout=30
        )
    after = cluster.proxies["proxy-2"].read_counts()
    served = {s for s in after if after[s] > before.get(s, 0.0)}
    assert sum(after.values()) - sum(before.values()) == 30
    assert len(served) >= 2, f"30 reads all went to {served}"


def test_maintenance_and_storage_scoped_rpcs(cluster: LocalCluster, tmp_path: Path) -> None:
    path, _work, _head = pushed_repo(cluster, tmp_path)
    before = cluster.wait_converged(path, timeout=60)
    repos = stub(cluster, "proxy-3", repository_pb2_grpc.RepositoryServiceStub)
    repos.OptimizeRepository(
        repository_pb2.OptimizeRepositoryRequest(repository=repo_msg(path)), metadata=md(cluster), timeout=60
    )
    after = cluster.repository(path)
    assert after is not None and after.generation == before.generation

    server = stub(cluster, "proxy-1", server_pb2_grpc.ServerServiceStub)
    listed = [
        p
        for page in server.ListStorageRepositories(
            server_pb2.ListStorageRepositoriesRequest(storage_name="node-b"), metadata=md(cluster), timeout=30
        )
        for p in page.relative_paths
    ]
    assert before.repository.replica_path in listed
    with pytest.raises(grpc.RpcError) as unknown:
        list(
            server.ListStorageRepositories(
                server_pb2.ListStorageRepositoriesRequest(storage_name="node-z"),
                metadata=md(cluster),
                timeout=30,
            )
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    info = server.ServerInfo(server_pb2.ServerInfoRequest(), metadata=md(cluster), timeout=30)
    assert info.server_version.startswith("gitraft-proxy")


def test_admin_api_and_auth(cluster: LocalCluster, tmp_path: Path) -> None:
    path, _work, _head = pushed_repo(cluster, tmp_path)
    cluster.wait_converged(path, timeout=60)
    status = cluster.cluster_status("proxy-2")
    assert status.answered_by == "proxy-2"
    assert {n.storage for n in status.nodes if n.healthy} == {"node-a", "node-b", "node-c"}
    assert status.repository_count >= 1
    roles = [p.raft_role for p in status.proxies]
    assert len(roles) == 3 and roles.count("leader") == 1
    jobs = cluster.jobs("proxy-3", states=["completed"])
    assert any(j.relative_path == path and j.change in ("create", "update") for j in jobs)
    loss = cluster.cluster_stub("proxy-1").DatalossCheck(
        cluster_pb2.DatalossCheckRequest(include_partially_available=True), metadata=md(cluster), timeout=10
    )
    assert path not in {r.relative_path for r in loss.unavailable}

    votes = stub(cluster, "proxy-1", transaction_pb2_grpc.TransactionServiceStub)
    with pytest.raises(grpc.RpcError) as strong:
        votes.VoteTransaction(transaction_pb2.VoteTransactionRequest(), metadata=md(cluster), timeout=10)
    assert strong.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "strong consistency is not enabled" in (strong.value.details() or "")

    refs = stub(cluster, "proxy-1", ref_pb2_grpc.RefServiceStub)
    with pytest.raises(grpc.RpcError) as denied:
        refs.FindDefaultBranch(ref_pb2.FindDefaultBranchRequest(repository=repo_msg(path)), timeout=10)
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    bad_url = cluster.git_url("proxy-1", path).replace(cluster.token, "wrong")
    refused = run_git("ls-remote", bad_url, cwd=tmp_path, check=False)
    assert refused.returncode != 0


def test_concurrent_pushes_create_one_repository(cluster: LocalCluster, tmp_path: Path) -> None:
    name = f"group/race{next(_names)}"
    works = []
    for i in range(3):
        work = init_work_tree(tmp_path / f"work{i}", branch=f"b{i}")
        commit_file(work, "f.txt", f"{i}\n")
        works.append(work)
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(
                lambda i: run_git(
                    "push", "-q", cluster.git_url(f"proxy-{i + 1}", name), f"b{i}", cwd=works[i], check=False
                ),
                range(3),
            )
        )
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    refs = remote_refs(cluster.git_url("proxy-2", name), cwd=tmp_path)
    assert {"refs/heads/b0", "refs/heads/b1", "refs/heads/b2"} <= set(refs)
    listed = cluster.cluster_stub("proxy-1").ListClusterRepositories(
        cluster_pb2.ListClusterRepositoriesRequest(), metadata=md(cluster), timeout=10
    )
    assert [r.relative_path for r in listed.repositories].count(f"{name}.git") == 1
    cluster.wait_converged(f"{name}.git", timeout=60)


def test_a_large_push_and_clone_stream_through(cluster: LocalCluster, tmp_path: Path) -> None:
    name = f"group/big{next(_names)}"
    work = init_work_tree(tmp_path / "work")
    blob = os.urandom(8 * 1024 * 1024)  # incompressible: the pack is as large
    commit_file(work, "big.bin", blob)
    run_git("push", "-q", cluster.git_url("proxy-3", name), "main", cwd=work)
    clone = tmp_path / "clone"
    run_git("clone", "-q", cluster.git_url("proxy-1", name), str(clone), cwd=tmp_path)
    assert (clone / "big.bin").read_bytes() == blob
    cluster.wait_converged(f"{name}.git", timeout=120)


def test_an_interactive_upload_pack_session_is_relayed_before_the_client_ends_its_stream(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """UploadPackSession is full duplex: the client waits for upload-pack's advertisement
    before it says anything more, so the proxy must not wait for the end of its stream."""
    path, _, head = pushed_repo(cluster, tmp_path)
    answered = threading.Event()

    def requests() -> Iterator[repository_pb2.UploadPackSessionRequest]:
        yield repository_pb2.UploadPackSessionRequest(repository=repo_msg(path))
        answered.wait(timeout=30)  # the advertisement first, as git's fetch does
        yield repository_pb2.UploadPackSessionRequest(stdin=b"0000")  # "I want nothing"

    sessions = stub(cluster, "proxy-1", repository_pb2_grpc.RepositoryServiceStub)
    stdout = b""
    for message in sessions.UploadPackSession(requests(), metadata=md(cluster), timeout=20):
        stdout += message.stdout
        if head.encode() in stdout:
            answered.set()
    assert answered.is_set() and f"{head} refs/heads/main".encode() in stdout
