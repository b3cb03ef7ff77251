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

# Reads go on until the paused replica was chosen (and given up on) CHOSEN times;
# MAX_READS only bounds the loop. Up-to-date replicas are picked at random, but a
# replica that was given up on is picked less often afterwards (its calls still hang),
# so 60 reads gave only 2 hits once in a loaded full run: 200 leaves a wide margin and
# costs nothing when the hits come early (the loop stops at CHOSEN).
CHOSEN = 3
MAX_READS = 200


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    # 1 s: a replica slow to answer on a loaded machine is merely tried after another
    # one (the last candidate is waited for as long as the client allows).
    settings = dict(TEST_PROXY_SETTINGS, health_failure_threshold=10_000, read_first_response_timeout=1.0)
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
    before = cluster.read_counts().get(secondary, 0.0)
    chosen = 0.0
    os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        for i in range(MAX_READS):
            proxy = f"proxy-{i % 3 + 1}"
            url = cluster.git_url(proxy, path)
            out = run_git("ls-remote", url, "refs/heads/main", cwd=tmp_path, timeout=60)
            assert out.stdout.split()[0] == head, proxy
            chosen = cluster.read_counts().get(secondary, 0.0) - before
            if chosen >= CHOSEN:
                break
        clone = tmp_path / "clone"
        run_git("clone", "-q", cluster.git_url("proxy-2", path), str(clone), cwd=tmp_path, timeout=60)
        assert run_git("rev-parse", "HEAD", cwd=clone).stdout.strip() == head
    finally:
        os.kill(node.proc.pid, signal.SIGCONT)
    # The paused node was really chosen (and given up on), not avoided by luck: every
    # read above succeeded although some went to it first.
    assert chosen >= CHOSEN, f"the paused replica was chosen {chosen:g} times in {MAX_READS} reads"
