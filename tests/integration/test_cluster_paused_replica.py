"""A replica that stops answering (SIGSTOP: the kernel still accepts its connections)
must not hang reads: the proxy gives a read's node `read_first_response_timeout`
seconds to start answering, then tries another up-to-date replica.

The proxies here need 10,000 failed health checks before they vote a node down, so the
paused node stays "healthy" for the cluster and keeps being chosen for reads: only the
proxy's own bound on a silent node gets the reads through."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster, commit_file, init_work_tree, run_git

READS = 20  # each up-to-date replica is picked at random: (2/3)^20 < 0.1% that none hits the paused one


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    settings = dict(TEST_PROXY_SETTINGS, health_failure_threshold=10_000, read_first_response_timeout=2.0)
    with LocalCluster(tmp_path_factory.mktemp("paused"), proxies=3, nodes=3, proxy_settings=settings) as c:
        yield c


def test_reads_go_around_a_paused_replica(cluster: LocalCluster, tmp_path: Path) -> None:
    path = "paused/reads.git"
    work = init_work_tree(tmp_path / "work")
    head = commit_file(work, "a.txt", "one\n")
    run_git("push", "-q", cluster.git_url("proxy-1", path), "main", cwd=work)
    repo = cluster.wait_converged(path).repository
    secondary = next(r.storage for r in repo.replicas if r.storage != repo.primary)
    node = cluster.nodes[secondary].process
    assert node is not None and node.proc is not None
    before = cluster.read_counts()
    os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        for i in range(READS):
            proxy = f"proxy-{i % 3 + 1}"
            url = cluster.git_url(proxy, path)
            out = run_git("ls-remote", url, "refs/heads/main", cwd=tmp_path, timeout=60)
            assert out.stdout.split()[0] == head, proxy
        clone = tmp_path / "clone"
        run_git("clone", "-q", cluster.git_url("proxy-2", path), str(clone), cwd=tmp_path, timeout=60)
        assert run_git("rev-parse", "HEAD", cwd=clone).stdout.strip() == head
    finally:
        os.kill(node.proc.pid, signal.SIGCONT)
    after = cluster.read_counts()
    # The paused node was really chosen (and given up on), not avoided by luck.
    assert after.get(secondary, 0.0) > before.get(secondary, 0.0)
