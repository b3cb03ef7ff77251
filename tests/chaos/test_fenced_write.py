"""Issue #9 end to end: a push in flight on a primary that is paused (SIGSTOP) while the
elector moves the primary and another push is acknowledged through the new one.

The first push is sent by a slow smart-HTTP client (tests/chaos/slow_push.py) that
stops half-way through its pack, so the write is surely in flight when its primary is
paused, and no `git push` probe request bumps the generation just before. When the old
primary resumes (SIGCONT) and the rest of the pack arrives, its receive-pack updates its
own `main`; the fence must refuse that push (never an acknowledgement), and the cluster
must converge on the acknowledged push: every replica at the same generation and
checksum, `main` at the second push's commit on every node's disk.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import (
    TEST_PROXY_SETTINGS,
    LocalCluster,
    commit_file,
    init_work_tree,
    remote_refs,
    run_git,
)
from tests.chaos.slow_push import SlowPush, receive_pack_body

PATH = "group/fenced"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # The paused write must still be in flight when its node resumes: a long intent.
    settings = {**TEST_PROXY_SETTINGS, "write_intent_timeout": 60.0}
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3, proxy_settings=settings) as c:
        yield c


def signal_node(cluster: LocalCluster, node: str, sig: signal.Signals) -> None:
    """SIGSTOP/SIGCONT a node with its git children (its own process group)."""
    proc = cluster.nodes[node].process
    assert proc is not None
    os.killpg(proc.pid, sig)


def test_a_push_in_flight_on_a_paused_primary_is_not_acknowledged(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    first = init_work_tree(tmp_path / "first")
    seed = commit_file(first, "README.md", "seed\n", "seed")
    run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=first)
    cluster.wait_converged(PATH)
    second = tmp_path / "second"
    run_git("clone", "-q", cluster.git_url("proxy-2", PATH), str(second), cwd=tmp_path)
    repo = cluster.repository(PATH)
    assert repo is not None
    old_primary = repo.primary

    doomed = commit_file(first, "big.bin", os.urandom(2 * 1024 * 1024), "in flight on the old primary")
    body = receive_pack_body(first, seed, doomed)
    push = SlowPush(cluster.git_url("proxy-1", PATH), body, chunk=64 * 1024, pause=0.02).start()
    paused = False
    try:
        cluster.wait_until(lambda: push.sent >= len(body) // 2 or push.error, 60, "half of the pack sent")
        push.hold.clear()
        assert not push.error and push.status == 0, (push.error, push.status)
        signal_node(cluster, old_primary, signal.SIGSTOP)
        paused = True

        def moved() -> str:
            now = cluster.repository(PATH, proxy="proxy-2")
            return now.primary if now is not None and now.primary != old_primary else ""

        new_primary = cluster.wait_until(moved, 60, "the elector moving the primary")
        acked = commit_file(second, "other.txt", "acknowledged through the new primary\n", "acked")
        run_git("push", "-q", cluster.git_url("proxy-2", PATH), "main", cwd=second)
    finally:
        if paused:
            signal_node(cluster, old_primary, signal.SIGCONT)
        push.hold.set()
    push.wait(timeout=120)
    assert not push.acknowledged(), (
        f"the push that ran on the old primary was acknowledged: {push.response!r}"
    )
    converged = cluster.wait_converged(PATH, timeout=120)
    final = remote_refs(cluster.git_url("proxy-3", PATH), second).get("refs/heads/main")
    assert final == acked, f"main is {final}; acknowledged {acked}, refused {doomed}, seed {seed}"
    on_disk = {
        storage: run_git(
            "--git-dir",
            str(node.storage_path / converged.repository.replica_path),
            "rev-parse",
            "main",
            cwd=tmp_path,
        ).stdout.strip()
        for storage, node in cluster.nodes.items()
    }
    assert set(on_disk.values()) == {acked}, on_disk
    print(
        f"old primary {old_primary}, new {new_primary}, generation {converged.generation}; "
        f"refused push: status {push.status} {push.error!r} {push.response[-300:]!r}"
    )
