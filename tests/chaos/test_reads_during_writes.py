"""Reads while writes are in flight (gitaly#4380: reading uncommitted in-flight writes).

One writer pushes to `main` through proxy-1 in a loop while readers fetch `main`
through proxy-2 and proxy-3. A git fetch over smart HTTP is several requests (ref
advertisement, then the pack negotiation); every fetch must succeed and yield a commit
the writer made; a fetch that began after a push was acknowledged must contain it (no
stale read); each reader only moves forward along the writer's chain; every commit a
reader saw was acknowledged in the end (a push in flight may be seen before its
acknowledgement, never one that fails); once the writer stops, every replica converges.

The short version runs in `make test`; the soak (`slow`) runs longer with more readers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster, commit_file, init_work_tree, run_git

PATH = "group/reads-during-writes"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # No fault here: health checks patient enough that a loaded 2-core machine does not
    # see the primary unhealthy (0.5 s checks flapped 42 times in one run: refused reads).
    settings = {**TEST_PROXY_SETTINGS, "health_timeout": 2.0, "health_failure_threshold": 3}
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3, proxy_settings=settings) as c:
        yield c


def push_until_acked(cluster: LocalCluster, work: Path, attempts: int = 5) -> None:
    """Push `main` through proxy-1; a refusal (e.g. the primary briefly seen unhealthy
    on a loaded machine: 503, repository unavailable) is retried, bounded."""
    for attempt in range(attempts):
        pushed = run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work, check=False)
        if pushed.returncode == 0:
            return
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError(f"push refused {attempts} times: {pushed.stderr.strip()[-300:]}")


def run(cluster: LocalCluster, tmp_path: Path, writes: int, readers: int) -> None:
    work = init_work_tree(tmp_path / "writer")
    commits = [commit_file(work, "seed.txt", "seed\n", "seed")]
    run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
    cluster.wait_converged(PATH)

    done = threading.Event()
    failures: list[str] = []
    anomalies: list[str] = []
    seen_commits: set[str] = set()
    fetches = [0] * readers
    # acked[k] = monotonic time push k (commits[k]) was acknowledged; the seed at once.
    acked: dict[int, float] = {0: time.monotonic()}

    def reader(n: int) -> None:
        clone = tmp_path / f"reader-{n}"
        url = cluster.git_url(f"proxy-{n % 2 + 2}", PATH)
        run_git("clone", "-q", url, str(clone), cwd=tmp_path)
        last = 0
        while not done.is_set():
            began = time.monotonic()
            must = max((k for k, at in list(acked.items()) if at < began), default=0)
            fetched = run_git("fetch", "-q", url, "main", cwd=clone, check=False)
            fetches[n] += 1
            if fetched.returncode != 0:
                failures.append(f"reader {n}: {fetched.stderr.strip()[-300:]}")
                continue
            oid = run_git("rev-parse", "FETCH_HEAD", cwd=clone).stdout.strip()
            if oid not in commits:
                anomalies.append(f"reader {n}: {oid}, a commit the writer never made")
                continue
            seen_commits.add(oid)
            k = commits.index(oid)
            if k < must:
                anomalies.append(f"reader {n}: stale read of write {k}, write {must} was acknowledged before")
            if k < last:
                anomalies.append(f"reader {n}: went back from write {last} to write {k}")
            last = max(last, k)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(readers)]
    for t in threads:
        t.start()
    try:
        for i in range(writes):
            oid = commit_file(work, f"data-{i % 4}.bin", os.urandom(256 * 1024), f"write {i}")
            commits.append(oid)  # before the push: a reader may see it before it is acked
            push_until_acked(cluster, work)
            acked[len(commits) - 1] = time.monotonic()
    finally:
        done.set()
        for t in threads:
            t.join(timeout=300)
    converged = cluster.wait_converged(PATH)
    assert not anomalies, f"{len(anomalies)} anomalies: {anomalies[:5]}"
    never_acked = [c for c in seen_commits if commits.index(c) not in acked]
    assert not never_acked, f"readers saw commits whose push was never acknowledged: {never_acked}"
    assert not failures, f"{len(failures)} of {sum(fetches)} fetches failed during writes: {failures[:5]}"
    print(f"{sum(fetches)} fetches during {writes} writes, generation {converged.generation}")


def test_fetches_succeed_while_pushes_are_in_flight(cluster: LocalCluster, tmp_path: Path) -> None:
    run(cluster, tmp_path, writes=30, readers=4)


@pytest.mark.slow
def test_fetches_succeed_while_pushes_are_in_flight_soak(cluster: LocalCluster, tmp_path: Path) -> None:
    run(cluster, tmp_path, writes=200, readers=8)
