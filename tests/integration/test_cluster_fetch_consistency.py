"""A fetch is two HTTP requests (the ref advertisement, then the upload-pack POST with
its wants), each routed on its own to an up-to-date replica. They can land on replicas
that differ in what they hold beyond their common generation: the advertisement served
by the primary with a write in flight (every other candidate was outdated), the POST
then by a replica that a replication job raised meanwhile without that write. git then
fails with `upload-pack: not our ref <oid>` (seen in CI in
tests/chaos/test_concurrent_pushes.py).

The proxy tries a POST whose replica answers "not our ref" again on another up-to-date
replica, the primary first (it holds every write in flight). Here an object exists on
the primary's disk only, the replicas being at one generation, and is fetched by its id
through every proxy, many times: each fetch must succeed, wherever its POST is routed
first. An object no replica holds still fails with git's own message, and the proxy
keeps serving.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import LocalCluster, commit_file, init_work_tree, run_git

PATH = "group/fetch-consistency"
FETCHES = 12


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("fetch") / "cluster", proxies=3, nodes=3) as c:
        yield c


def only_on_primary(cluster: LocalCluster, tmp_path: Path) -> str:
    """The id of a commit written straight into the primary's replica (no other has it)."""
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "a.txt", "one\n")
    run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
    repo = cluster.wait_converged(PATH).repository
    primary_dir = cluster.nodes[repo.primary].storage_path / repo.replica_path
    made = subprocess.run(
        ["git", f"--git-dir={primary_dir}", "commit-tree", "main^{tree}", "-p", "main", "-m", "primary only"],
        capture_output=True,
        text=True,
        check=True,
    )
    oid = made.stdout.strip()
    for replica in repo.replicas:
        replica_dir = cluster.nodes[replica.storage].storage_path / repo.replica_path
        held = run_git("--git-dir", str(replica_dir), "cat-file", "-e", oid, cwd=tmp_path, check=False)
        assert (held.returncode == 0) == (replica.storage == repo.primary), f"{replica.storage} holds {oid}"
    return oid


def fetch_by_id(url: str, oid: str, into: Path) -> subprocess.CompletedProcess[str]:
    run_git("init", "-q", "--bare", str(into), cwd=into.parent)
    return run_git("fetch", "-q", url, oid, cwd=into, check=False)


def test_a_fetch_whose_replica_lacks_a_wanted_object_is_served_by_the_primary(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    oid = only_on_primary(cluster, tmp_path)
    failures = []
    for i in range(FETCHES):
        proxy = f"proxy-{i % 3 + 1}"
        done = fetch_by_id(cluster.git_url(proxy, PATH), oid, tmp_path / f"fetch-{i}")
        if done.returncode != 0:
            failures.append(f"fetch {i} through {proxy}: {done.stderr.strip()[-200:]}")
        else:
            assert run_git("cat-file", "-t", oid, cwd=tmp_path / f"fetch-{i}").stdout.strip() == "commit"
    assert not failures, failures

    missing = "0123456789abcdef0123456789abcdef01234567"
    done = fetch_by_id(cluster.git_url("proxy-2", PATH), missing, tmp_path / "missing")
    assert done.returncode != 0
    assert f"not our ref {missing}" in done.stderr
    assert (
        "Traceback" not in done.stderr
        and str(cluster.nodes[cluster.repository(PATH).primary].storage_path) not in done.stderr
    )
    again = fetch_by_id(cluster.git_url("proxy-2", PATH), oid, tmp_path / "after")
    assert again.returncode == 0, again.stderr
