"""Issue #13, long writes, end to end: a push that takes several times
`write_intent_timeout` is acknowledged and replicated while its bytes keep flowing,
and the intent of a proxy SIGKILLed in the middle of a slow push is still repaired.

The pack is sent by a throttled smart-HTTP client (tests/chaos/slow_push.py) through a
proxy's gateway; the intent timeout is 3 s, the push takes about 7 s.
"""

from __future__ import annotations

import os
import time
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

PATH = "group/long-push"
INTENT_TIMEOUT = 3.0
PACK_BYTES = 1536 * 1024
CHUNK = 64 * 1024
PAUSE = 0.3  # 24 chunks: the push lasts at least 24 * PAUSE > 2 * INTENT_TIMEOUT


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    settings = {**TEST_PROXY_SETTINGS, "write_intent_timeout": INTENT_TIMEOUT}
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3, proxy_settings=settings) as c:
        yield c


def seed(cluster: LocalCluster, tmp_path: Path) -> tuple[Path, str]:
    work = init_work_tree(tmp_path / "work")
    oid = commit_file(work, "README.md", "seed\n", "seed")
    run_git("push", "-q", cluster.git_url("proxy-2", PATH), "main", cwd=work)
    cluster.wait_converged(PATH)
    return work, oid


def intents_repaired(cluster: LocalCluster, exclude: list[str]) -> float:
    return sum(
        value
        for name in cluster.alive_proxies(exclude)
        for metric, _, value in cluster.proxies[name].metrics()
        if metric == "gitraft_proxy_intents_repaired_total"
    )


def test_a_push_longer_than_the_intent_timeout_is_acknowledged_and_replicated(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    work, old = seed(cluster, tmp_path)
    new = commit_file(work, "big.bin", os.urandom(PACK_BYTES), "a slow import")
    body = receive_pack_body(work, old, new)
    started = time.monotonic()
    push = SlowPush(cluster.git_url("proxy-1", PATH), body, chunk=CHUNK, pause=PAUSE).start()
    push.wait(timeout=300)
    took = time.monotonic() - started
    assert push.acknowledged(), (took, push.status, push.error, push.response)
    assert took > 2 * INTENT_TIMEOUT, (
        "the push must outlast its intent's timeout for this test to mean anything"
    )
    converged = cluster.wait_converged(PATH, timeout=120)
    assert remote_refs(cluster.git_url("proxy-3", PATH), work)["refs/heads/main"] == new
    print(f"push of {len(body)} bytes took {took:.1f}s; generation {converged.generation}")


def test_the_intent_of_a_proxy_killed_mid_slow_push_is_repaired(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    work, old = seed(cluster, tmp_path)
    new = commit_file(work, "big.bin", os.urandom(PACK_BYTES), "a slow import, cut")
    body = receive_pack_body(work, old, new)
    before = intents_repaired(cluster, exclude=["proxy-1"])
    push = SlowPush(cluster.git_url("proxy-1", PATH), body, chunk=CHUNK, pause=PAUSE).start()
    # Past one intent timeout (renewed at least once), then the proxy dies.
    cluster.wait_until(lambda: push.sent >= len(body) // 2 or push.error, 60, "half of the pack sent")
    cluster.kill("proxy-1")
    push.wait(timeout=120)
    assert not push.acknowledged()
    cluster.wait_for_leader(exclude=["proxy-1"])
    cluster.wait_until(
        lambda: intents_repaired(cluster, exclude=["proxy-1"]) > before,
        60,
        "the dead proxy's intent repaired",
    )
    converged = cluster.wait_converged(PATH, timeout=120)
    final = remote_refs(cluster.git_url("proxy-2", PATH), work)["refs/heads/main"]
    assert final == old, f"main is {final}: the cut push ({new}) never completed"
    print(f"repaired; generation {converged.generation}")
