"""Self-healing without writes: the reconciler, the verifier and dead jobs, on a real
cluster (3 proxies, 3 nodes, real git, real Raft), with short intervals.

- a secondary's replica directory deleted on disk is recreated (no write);
- a ref changed by hand on a secondary is reported at once by VerifyRepositories and
  repaired from the primary;
- a target that fails every attempt ends `dead` with its last error and can be retried
  (RetryReplicationJobs); once fixed, the reconciler brings it current without a write;
- a proxy SIGKILLed while holding a lease: another proxy completes the job.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster, commit_file, init_work_tree, run_git
from gitraft.v1 import cluster_pb2

SETTINGS = {
    **TEST_PROXY_SETTINGS,
    "reconcile_interval": 0.3,
    "reconcile_exists_batch": 100,
    "reconcile_dead_retry_after": 1.0,
    # The background verifier stays idle here: VerifyRepositories must find the change.
    "verify_interval": 1e9,
    "verify_tick": 0.5,
}
MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("self-healing")
    with LocalCluster(
        workdir / "cluster",
        proxies=3,
        nodes=3,
        proxy_settings=SETTINGS,
        raft_settings={"job_max_attempts": MAX_ATTEMPTS},
    ) as c:
        yield c


def pushed(cluster: LocalCluster, tmp_path: Path, path: str) -> tuple[Path, cluster_pb2.ClusterRepository]:
    """A repository with one commit, converged on every replica."""
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "a.txt", "one\n")
    run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work)
    return work, cluster.wait_converged(path).repository


def on_disk(cluster: LocalCluster, storage: str, repo: cluster_pb2.ClusterRepository) -> Path:
    return cluster.nodes[storage].storage_path / repo.replica_path


def generation_of(cluster: LocalCluster, path: str, storage: str) -> int:
    repo = cluster.repository(path)
    assert repo is not None
    return next(int(r.generation) for r in repo.replicas if r.storage == storage)


def test_deleted_replica_directory_is_recreated_without_a_write(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    path = "heal/deleted.git"
    _, repo = pushed(cluster, tmp_path, path)
    secondary = next(r.storage for r in repo.replicas if r.storage != repo.primary)
    expected = cluster.replica_checksum(repo.primary, repo.replica_path)

    shutil.rmtree(on_disk(cluster, secondary, repo))
    started = time.monotonic()
    cluster.wait_until(
        lambda: (
            on_disk(cluster, secondary, repo).is_dir()
            and cluster.replica_checksum(secondary, repo.replica_path) == expected
        ),
        timeout=60,
        what=f"{secondary}'s replica recreated",
    )
    converged = cluster.wait_converged(path)
    print(f"replica recreated on {secondary} in {time.monotonic() - started:.2f}s")
    assert converged.generation == repo.generation  # no write happened


def test_ref_changed_by_hand_is_reported_and_repaired(cluster: LocalCluster, tmp_path: Path) -> None:
    path = "heal/tampered.git"
    _, repo = pushed(cluster, tmp_path, path)
    secondary = next(r.storage for r in repo.replicas if r.storage != repo.primary)
    expected = cluster.replica_checksum(repo.primary, repo.replica_path)
    git_dir = on_disk(cluster, secondary, repo)
    head = subprocess.run(
        ["git", "rev-parse", "refs/heads/main"], cwd=git_dir, capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "update-ref", "refs/heads/rogue", head], cwd=git_dir, check=True)
    assert cluster.replica_checksum(secondary, repo.replica_path) != expected

    stub = cluster.cluster_stub("proxy-2")
    answer = stub.VerifyRepositories(
        cluster_pb2.VerifyRepositoriesRequest(relative_paths=[path]),
        metadata=cluster.metadata("proxy-2"),
        timeout=30,
    )
    (verified,) = answer.repositories
    by_storage = {r.storage: r for r in verified.replicas}
    assert answer.mismatches == 1, answer
    assert not by_storage[secondary].matches and by_storage[secondary].checksum not in ("", expected)
    assert by_storage[repo.primary].matches and by_storage[repo.primary].checksum == expected
    assert by_storage[repo.primary].default_branch == "refs/heads/main"
    assert list(verified.repairs_scheduled) == [secondary]

    cluster.wait_until(
        lambda: cluster.replica_checksum(secondary, repo.replica_path) == expected,
        timeout=60,
        what=f"{secondary} repaired",
    )
    cluster.wait_converged(path)
    again = stub.VerifyRepositories(
        cluster_pb2.VerifyRepositoriesRequest(relative_paths=[path]),
        metadata=cluster.metadata("proxy-2"),
        timeout=30,
    )
    assert again.mismatches == 0 and all(r.matches for r in again.repositories[0].replicas), again


def test_a_primary_that_differs_from_every_replica_lowers_no_generation(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """As after a push whose answer was lost (a partition mid-push): the primary's refs
    changed, its generation did not, and the write's failure flagged it for the
    verifier. The verifier takes the primary's content as the repository's: the primary
    goes to the next generation and the others are repaired from it - no replica's
    generation goes down (invariant 3; the chaos harness's metadata checker caught the
    two secondaries dropping to -1 in a partition round)."""
    path = "heal/primary-ahead.git"
    _, repo = pushed(cluster, tmp_path, path)
    before = {r.storage: int(r.generation) for r in repo.replicas}
    primary_dir = on_disk(cluster, repo.primary, repo)
    head = subprocess.run(
        ["git", "rev-parse", "refs/heads/main"], cwd=primary_dir, capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "update-ref", "refs/heads/unacknowledged", head], cwd=primary_dir, check=True)
    expected = cluster.replica_checksum(repo.primary, repo.replica_path)

    stub = cluster.cluster_stub("proxy-3")
    answer = stub.VerifyRepositories(
        cluster_pb2.VerifyRepositoriesRequest(relative_paths=[path]),
        metadata=cluster.metadata("proxy-3"),
        timeout=30,
    )
    assert answer.mismatches == 2, answer
    after = cluster.repository(path)
    assert after is not None
    lowered = {r.storage: int(r.generation) for r in after.replicas if r.generation < before[r.storage]}
    assert not lowered, f"generations went down: {lowered} (before {before})"
    assert after.generation == repo.generation + 1
    current = {r.storage for r in after.replicas if r.generation == after.generation}
    assert repo.primary in current
    # The secondaries reach the new generation only by their repair, which may already
    # have run (it raced this read once): one recorded current holds the primary's refs,
    # never its old content relabelled.
    for storage in current - {repo.primary}:
        assert cluster.replica_checksum(storage, repo.replica_path) == expected, storage

    converged = cluster.wait_converged(path, timeout=60)
    assert converged.generation == repo.generation + 1
    assert set(cluster.replica_checksums(path).values()) == {expected}


def test_failing_target_ends_dead_then_heals_without_a_write(cluster: LocalCluster, tmp_path: Path) -> None:
    path = "heal/blocked.git"
    work, repo = pushed(cluster, tmp_path, path)
    secondary = next(r.storage for r in repo.replicas if r.storage != repo.primary)
    target = on_disk(cluster, secondary, repo)
    shutil.rmtree(target)
    target.write_text("not a repository\n")  # every ReplicateRepository now fails

    commit_file(work, "a.txt", "two\n")
    run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work)
    latest = cluster.repository(path)
    assert latest is not None

    def dead_job() -> cluster_pb2.ReplicationJob | None:
        for job in cluster.jobs(states=["dead"]):
            if job.relative_path == path and job.target == secondary:
                return job
        return None

    job = cluster.wait_until(dead_job, timeout=90, what=f"a dead job for {secondary}")
    assert job.attempts == MAX_ATTEMPTS and job.last_error, job
    assert generation_of(cluster, path, secondary) < latest.generation

    stub = cluster.cluster_stub("proxy-3")
    with pytest.raises(grpc.RpcError, match="name the jobs"):
        stub.RetryReplicationJobs(
            cluster_pb2.RetryReplicationJobsRequest(), metadata=cluster.metadata("proxy-3"), timeout=10
        )
    answer = stub.RetryReplicationJobs(
        cluster_pb2.RetryReplicationJobsRequest(job_ids=[job.id]),
        metadata=cluster.metadata("proxy-3"),
        timeout=10,
    )
    assert list(answer.retried) == [job.id]
    (retried,) = [j for j in cluster.jobs() if j.id == job.id]
    assert retried.state != "dead" or retried.attempts < MAX_ATTEMPTS, retried

    target.unlink()
    cluster.wait_converged(path, timeout=90)
    healed = cluster.repository(path)
    assert healed is not None and healed.generation == latest.generation  # no new write
