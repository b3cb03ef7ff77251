"""Partial clone through the cluster with the stock git client.

- `--filter=blob:none` (protocol v2), `--filter=blob:limit=<n>` (protocol v0) and
  `--filter=tree:0`: the server honours the filter (objects are really missing from the
  clone, no "filtering not recognized" warning), and the commands that need missing
  objects later (`checkout` of an older commit, `git log -p`) fetch them lazily, through
  another proxy than the one that served the clone.
- After the repository's primary node is SIGKILLed, a lazy fetch through another proxy
  still works (served by a surviving replica).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import LocalCluster, commit_file, init_work_tree, run_git

PATH = "partial/repo"
BIG = 20_000  # bytes of each large file; blob:limit below splits large from small


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster"), proxies=2, nodes=3) as c:
        yield c


@pytest.fixture(scope="module")
def source(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work tree with 6 commits, each changing a small and a large file; pushed."""
    work = init_work_tree(tmp_path_factory.mktemp("source") / "work")
    for i in range(6):
        (work / "docs").mkdir(exist_ok=True)
        (work / "docs" / "small.txt").write_text(f"small {i}\n")
        run_git("add", "docs", cwd=work)
        commit_file(work, "big.bin", bytes([i]) * BIG + str(i).encode(), f"version {i}")
    run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
    cluster.wait_converged(PATH)
    return work


def missing_objects(clone: Path) -> set[str]:
    """Ids of objects the clone's history refers to but does not have (no lazy fetch)."""
    out = run_git("rev-list", "--objects", "--all", "--missing=print", cwd=clone).stdout
    return {line[1:] for line in out.splitlines() if line.startswith("?")}


def partial_clone(cluster: LocalCluster, proxy: str, dest: Path, *options: str) -> str:
    """Clone PATH through `proxy` with `options`; git's stderr."""
    done = run_git("clone", *options, cluster.git_url(proxy, PATH), str(dest), cwd=dest.parent)
    assert "filtering not recognized" not in done.stderr, done.stderr
    return done.stderr


def use_proxy(cluster: LocalCluster, clone: Path, proxy: str) -> None:
    """Later (lazy) fetches of `clone` go through `proxy`."""
    run_git("remote", "set-url", "origin", cluster.git_url(proxy, PATH), cwd=clone)


def blob_of(work: Path, rev: str, path: str) -> str:
    return run_git("rev-parse", f"{rev}:{path}", cwd=work).stdout.strip()


def test_blob_none_then_lazy_checkout_and_log_through_another_proxy(
    cluster: LocalCluster, source: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "blobless"
    partial_clone(cluster, "proxy-1", clone, "-c", "protocol.version=2", "--filter=blob:none")
    missing = missing_objects(clone)
    assert blob_of(source, "main~3", "big.bin") in missing
    assert blob_of(source, "main~3", "docs/small.txt") in missing
    assert blob_of(source, "main", "big.bin") not in missing  # checked out at clone time

    use_proxy(cluster, clone, "proxy-2")
    run_git("checkout", "-q", "main~3", cwd=clone)
    assert (clone / "big.bin").read_bytes() == bytes([2]) * BIG + b"2"
    log = run_git("log", "-p", "main", cwd=clone).stdout
    assert log == run_git("log", "-p", "main", cwd=source).stdout
    assert not missing_objects(clone)


def test_blob_limit_keeps_small_blobs_only(cluster: LocalCluster, source: Path, tmp_path: Path) -> None:
    clone = tmp_path / "limited"
    partial_clone(cluster, "proxy-2", clone, "-c", "protocol.version=0", f"--filter=blob:limit={BIG // 2}")
    missing = missing_objects(clone)
    assert blob_of(source, "main~2", "big.bin") in missing
    assert blob_of(source, "main~2", "docs/small.txt") not in missing
    use_proxy(cluster, clone, "proxy-1")
    run_git("checkout", "-q", "main~2", cwd=clone)
    assert (clone / "big.bin").read_bytes() == bytes([3]) * BIG + b"3"


def test_tree_zero_fetches_trees_lazily(cluster: LocalCluster, source: Path, tmp_path: Path) -> None:
    clone = tmp_path / "treeless"
    partial_clone(cluster, "proxy-1", clone, "--filter=tree:0", "--no-checkout")
    missing = missing_objects(clone)
    tree = run_git("rev-parse", "main~4^{tree}", cwd=source).stdout.strip()
    assert tree in missing
    use_proxy(cluster, clone, "proxy-2")
    run_git("checkout", "-q", "main~4", cwd=clone)
    assert (clone / "docs" / "small.txt").read_text() == "small 1\n"
    assert run_git("rev-parse", "HEAD^{tree}", cwd=clone).stdout.strip() == tree


def test_lazy_fetch_after_the_primary_is_killed(cluster: LocalCluster, source: Path, tmp_path: Path) -> None:
    """Last in this module: it kills a node."""
    clone = tmp_path / "after-failover"
    partial_clone(cluster, "proxy-1", clone, "--filter=blob:none")
    repository = cluster.repository(PATH)
    assert repository is not None
    primary = repository.primary
    cluster.kill(primary)
    cluster.wait_health({primary: False})

    use_proxy(cluster, clone, "proxy-2")
    log = run_git("log", "-p", "main", cwd=clone).stdout
    assert log == run_git("log", "-p", "main", cwd=source).stdout
    assert not missing_objects(clone)
