"""The proxy under node failures (its own 3-proxy/3-node cluster of real processes).

Invariants checked: accessors never read an outdated or down replica; with the primary
down, the leader fails over to a current secondary and writes are served again; with no
healthy up-to-date replica, reads and writes are refused with FAILED_PRECONDITION naming
the storage (never served from the outdated one that is up, never elected to it); once
nodes return, every replica converges. A proxy stops cleanly on SIGTERM and rejoins; an
intent left by a SIGKILLed proxy is repaired by the leader.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster.testing import LocalCluster, commit_file, init_work_tree, run_git
from gitraft.v1 import (
    cluster_pb2,
    ref_pb2,
    ref_pb2_grpc,
    repository_pb2,
    repository_pb2_grpc,
    shared_pb2,
    smarthttp_pb2,
    smarthttp_pb2_grpc,
)

PATH = "fail/repo.git"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("proxy-failures"), proxies=3, nodes=3) as c:
        yield c


def healthy_nodes(cluster: LocalCluster, proxy: str = "proxy-1") -> set[str]:
    return {n.storage for n in cluster.cluster_status(proxy).nodes if n.healthy}


def wait_health(cluster: LocalCluster, expected: set[str]) -> None:
    cluster.wait_until(lambda: healthy_nodes(cluster) == expected, 30, f"healthy == {sorted(expected)}")


def current_replicas(cluster: LocalCluster) -> set[str]:
    repo = cluster.repository(PATH)
    assert repo is not None
    return {r.storage for r in repo.replicas if r.up_to_date}


def primary_of(cluster: LocalCluster) -> str:
    repo = cluster.repository(PATH)
    assert repo is not None
    return str(repo.primary)


def default_branch(cluster: LocalCluster, proxy: str) -> ref_pb2.FindDefaultBranchResponse:
    stub = ref_pb2_grpc.RefServiceStub(cluster.channel(proxy))
    request = ref_pb2.FindDefaultBranchRequest(repository=shared_pb2.Repository(relative_path=PATH))
    response: ref_pb2.FindDefaultBranchResponse = stub.FindDefaultBranch(
        request, metadata=cluster.metadata(proxy), timeout=30
    )
    return response


def update_ref(cluster: LocalCluster, proxy: str, ref: str, oid: str) -> None:
    stub = ref_pb2_grpc.RefServiceStub(cluster.channel(proxy))
    request = ref_pb2.UpdateReferencesRequest(
        repository=shared_pb2.Repository(relative_path=PATH),
        updates=[ref_pb2.ReferenceUpdate(ref=ref, new_oid=oid)],
    )
    stub.UpdateReferences(request, metadata=cluster.metadata(proxy), timeout=30)


def test_outdated_or_down_replicas_are_never_used(cluster: LocalCluster, tmp_path: Path) -> None:
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "a.txt", "one\n")
    run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
    first = cluster.wait_converged(PATH, timeout=60)
    primary = first.repository.primary
    lagging, other = sorted(s for s in first.checksums if s != primary)

    # A secondary goes away; writes go on, and it falls behind.
    cluster.stop(lagging)
    wait_health(cluster, {primary, other})
    head = commit_file(work, "b.txt", "two\n")
    run_git("push", "-q", cluster.git_url("proxy-2", PATH), "main", cwd=work)
    repo = cluster.repository(PATH)
    assert repo is not None
    generations = {r.storage: r.generation for r in repo.replicas}
    assert generations[lagging] < repo.generation == generations[primary]
    before = cluster.read_counts()
    for _ in range(10):
        assert default_branch(cluster, "proxy-3").target == head
    after = cluster.read_counts()
    assert after.get(lagging, 0.0) == before.get(lagging, 0.0)

    # The primary goes away too, once `other` has caught up: the leader's elector moves
    # the primary to `other`, and writes are served again.
    cluster.wait_until(lambda: other in current_replicas(cluster), 60, f"{other} up to date")
    cluster.stop(primary)
    wait_health(cluster, {other})
    cluster.wait_until(lambda: primary_of(cluster) == other, 30, f"failover to {other}")
    update_ref(cluster, "proxy-1", "refs/heads/x", head)
    written = cluster.repository(PATH)
    assert written is not None and written.generation > repo.generation
    assert default_branch(cluster, "proxy-2").target == head

    # The last current replica goes away and the outdated one returns: nothing may be
    # served from it. Reads and writes are refused, naming the storage with the data.
    cluster.stop(other)
    cluster.start_process(lagging)
    wait_health(cluster, {lagging})
    for proxy in ("proxy-1", "proxy-2", "proxy-3"):
        with pytest.raises(grpc.RpcError) as lost:
            default_branch(cluster, proxy)
        assert lost.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert repr(other) in (lost.value.details() or "")
    with pytest.raises(grpc.RpcError) as lost_write:
        update_ref(cluster, "proxy-3", "refs/heads/y", head)
    assert lost_write.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    refused_push = run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main:side", cwd=work, check=False)
    assert refused_push.returncode != 0
    assert primary_of(cluster) == other  # never elected away to an outdated replica
    # DatalossCheck names it meanwhile.
    unavailable = cluster.cluster_stub("proxy-2").DatalossCheck(
        cluster_pb2.DatalossCheckRequest(),
        metadata=cluster.metadata("proxy-2"),
        timeout=10,
    )
    assert PATH in {r.relative_path for r in unavailable.unavailable}

    # Everyone returns: the job that waited out the outage brings the outdated replica
    # up to date without another write; later writes replicate as usual.
    cluster.start_process(primary)
    cluster.start_process(other)
    wait_health(cluster, {primary, other, lagging})
    assert default_branch(cluster, "proxy-1").target == head
    healed = cluster.wait_converged(PATH, timeout=60)
    assert healed.generation == written.generation
    assert set(healed.checksums) == {primary, other, lagging}
    update_ref(cluster, "proxy-2", "refs/heads/after", head)
    final = cluster.wait_converged(PATH, timeout=60)
    assert final.generation > written.generation


def test_proxy_stops_cleanly_and_rejoins(cluster: LocalCluster, tmp_path: Path) -> None:
    path = "fail/rejoin.git"
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "a.txt", "one\n")
    run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work)
    proc = cluster.proxies["proxy-3"]
    cluster.stop("proxy-3")
    assert proc.process is not None and proc.process.proc is not None
    assert proc.process.proc.returncode == 0, proc.log_text()
    # A write while it is away reaches it through the Raft log once it is back.
    head = commit_file(work, "b.txt", "two\n")
    run_git("push", "-q", cluster.git_url("proxy-2", path), "main", cwd=work)
    cluster.start_process("proxy-3")
    assert cluster.repository(path, proxy="proxy-3") is not None
    refs = run_git("ls-remote", cluster.git_url("proxy-3", path), "refs/heads/main", cwd=work).stdout
    assert refs.split()[0] == head


def receive_packs_under(pid: int) -> list[int]:
    """Pids of `git receive-pack` processes whose parent is `pid` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and b"receive-pack" in argv:
            found.append(int(entry.name))
    return found


def repaired(cluster: LocalCluster, proxies: tuple[str, ...]) -> float:
    """Intents repaired by `proxies` (the ones that stay up: a killed proxy's counter
    would vanish from the sum)."""
    return sum(
        value
        for name in proxies
        for sample, labels, value in cluster.proxies[name].metrics()
        if sample == "gitraft_proxy_intents_repaired_total"
    )


def test_an_intent_left_by_a_killed_proxy_is_repaired_by_the_leader(cluster: LocalCluster) -> None:
    path = "fail/abandoned.git"
    repos = repository_pb2_grpc.RepositoryServiceStub(cluster.channel("proxy-2"))
    repos.CreateRepository(
        repository_pb2.CreateRepositoryRequest(repository=shared_pb2.Repository(relative_path=path)),
        metadata=cluster.metadata("proxy-2"),
        timeout=30,
    )
    before = cluster.wait_converged(path, timeout=60)
    primary = cluster.nodes[before.repository.primary]
    assert primary.process is not None
    survivors = ("proxy-2", "proxy-3")
    already = repaired(cluster, survivors)

    # A push through proxy-1 that never finishes sending: the intent is committed and
    # the primary runs receive-pack when proxy-1 is SIGKILLed.
    release = threading.Event()

    def requests() -> Iterator[smarthttp_pb2.PostReceivePackRequest]:
        yield smarthttp_pb2.PostReceivePackRequest(repository=shared_pb2.Repository(relative_path=path))
        release.wait(60)

    stub = smarthttp_pb2_grpc.SmartHTTPServiceStub(cluster.channel("proxy-1"))
    # No client deadline (as the gateway): the intent lives write_intent_timeout seconds.
    call = stub.PostReceivePack(requests(), metadata=cluster.metadata("proxy-1"))
    try:
        cluster.wait_until(
            lambda: receive_packs_under(primary.process.pid), 30, "receive-pack on the primary"
        )
        # SIGKILL first: LocalCluster.kill would close the client's channel before, and
        # proxy-1 would see the cancellation and close the intent itself.
        cluster.proxies["proxy-1"].kill()
    finally:
        release.set()
        with contextlib.suppress(grpc.RpcError):
            list(call)

    # The intent expires (write_intent_timeout) and the leader closes it; nothing had
    # changed on the primary, so the generation stays.
    cluster.wait_until(lambda: repaired(cluster, survivors) > already, 60, "an intent repaired")
    after = cluster.wait_converged(path, timeout=60)
    assert after.generation == before.generation
    cluster.start_process("proxy-1")
