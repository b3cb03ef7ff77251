"""The whole cluster serves git: 3 proxies and 3 nodes as real processes, the real git.

- A push through proxy-1 is cloned identically (refs and contents) through proxy-2 and
  proxy-3, and every replica reaches the same generation and checksum.
- A push larger than git's http.postBuffer (git probes with a `0000` body first) is one
  write: the probe opens no write intent and bumps no generation.
- A proxy's gateway answers protocol v2 capability advertisements of a repository it
  knows without a call (cluster.gateway.capabilities), and still reads fresh refs.
- Read-your-writes across proxies: 50 rounds of push through proxy-1 and an immediate
  fetch through proxy-3; the fetch always sees the push.

The tests share one cluster (module scope); each works on its own repository.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import LocalCluster, commit_file, init_work_tree, remote_refs, run_git

READ_YOUR_WRITES_ROUNDS = 50


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster"), proxies=3, nodes=3) as c:
        yield c


def tree_listing(work: Path, rev: str = "HEAD") -> str:
    """Every path, mode and blob id of `rev`'s tree: equal listings mean equal contents."""
    return run_git("ls-tree", "-r", "--full-tree", rev, cwd=work).stdout


def test_push_through_one_proxy_clone_through_the_others(cluster: LocalCluster, tmp_path: Path) -> None:
    path = "group/push-clone"
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "README.md", "hello\n", "first")
    commit_file(work, "src/main.py", "print('hi')\n", "second")
    run_git("branch", "feature", cwd=work)
    commit_file(work, "bin.dat", bytes(range(256)) * 64, "binary")
    run_git("tag", "-a", "v1", "-m", "release v1", cwd=work)
    run_git("push", cluster.git_url("proxy-1", path), "refs/heads/*:refs/heads/*", "--tags", cwd=work)

    local = {
        ref: oid
        for oid, _, ref in (
            line.partition(" ") for line in run_git("show-ref", "--head", cwd=work).stdout.splitlines()
        )
    }
    for proxy in ("proxy-2", "proxy-3"):
        clone = tmp_path / f"clone-{proxy}"
        run_git("clone", "-q", cluster.git_url(proxy, path), str(clone), cwd=tmp_path)
        refs = remote_refs(cluster.git_url(proxy, path), tmp_path)
        assert {r: o for r, o in refs.items() if not r.endswith("^{}")} == local, proxy
        assert run_git("rev-parse", "HEAD", cwd=clone).stdout.strip() == local["refs/heads/main"]
        assert tree_listing(clone) == tree_listing(work)
        assert (clone / "bin.dat").read_bytes() == bytes(range(256)) * 64
        run_git("fsck", "--strict", cwd=clone)

    converged = cluster.wait_converged(path)
    assert len(converged.checksums) == 3
    # The push created the repository (generation 0), then wrote once (1).
    assert converged.generation == 1


def test_a_probed_push_is_one_write(cluster: LocalCluster, tmp_path: Path) -> None:
    path = "group/probed-push"
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "big.bin", secrets.token_bytes(64 * 1024), "big")
    url = cluster.git_url("proxy-2", path)
    run_git("-c", "http.postBuffer=4096", "push", "-q", url, "main", cwd=work)
    head = run_git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert remote_refs(url, tmp_path)["refs/heads/main"] == head
    converged = cluster.wait_converged(path)
    assert converged.generation == 1  # created (0), then the push alone (1)


def info_refs_calls(cluster: LocalCluster, proxy: str) -> float:
    """InfoRefsUploadPack calls the proxy's coordinator answered."""
    return sum(
        value
        for name, labels, value in cluster.proxies[proxy].metrics()
        if name == "gitraft_proxy_rpcs_total" and labels["method"].endswith("/InfoRefsUploadPack")
    )


def test_v2_capabilities_come_from_the_gateway_and_refs_stay_fresh(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    path = "group/capabilities"
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "a.txt", "a\n", "first")
    run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work)
    url = cluster.git_url("proxy-3", path)
    remote_refs(url, tmp_path)  # the first advertisement is fetched and kept
    before = info_refs_calls(cluster, "proxy-3")
    for round_ in range(3):
        commit_file(work, "a.txt", f"round {round_}\n", f"round {round_}")
        run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work)
        head = run_git("rev-parse", "HEAD", cwd=work).stdout.strip()
        assert remote_refs(url, tmp_path)["refs/heads/main"] == head
    assert info_refs_calls(cluster, "proxy-3") == before


def test_read_your_writes_across_proxies(cluster: LocalCluster, tmp_path: Path) -> None:
    path = "group/read-your-writes"
    work = init_work_tree(tmp_path / "work")
    run_git("remote", "add", "p1", cluster.git_url("proxy-1", path), cwd=work)
    run_git("remote", "add", "p3", cluster.git_url("proxy-3", path), cwd=work)
    stale: list[tuple[int, str, str]] = []
    for i in range(READ_YOUR_WRITES_ROUNDS):
        oid = commit_file(work, "counter.txt", f"{i}\n", f"round {i}")
        run_git("push", "-q", "p1", "main", cwd=work)
        run_git("fetch", "-q", "p3", "main", cwd=work)
        seen = run_git("rev-parse", "FETCH_HEAD", cwd=work).stdout.strip()
        if seen != oid:
            stale.append((i, oid, seen))
    assert not stale, f"fetches through proxy-3 missed the push just made through proxy-1: {stale}"
    cluster.wait_converged(path)
