"""Reads while writes are in flight (gitaly#4380: reading uncommitted in-flight writes).

One writer pushes to `main` through proxy-1 in a loop while readers fetch `main`
through proxy-2 and proxy-3. A git fetch over smart HTTP is several requests (ref
advertisement, then the pack negotiation); every fetch must succeed and yield a commit
the writer made, and once the writer stops, every replica converges.

The short version runs in `make test`; the soak (`slow`) runs longer with more readers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import LocalCluster, commit_file, init_work_tree, run_git

PATH = "group/reads-during-writes"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3) as c:
        yield c


def run(cluster: LocalCluster, tmp_path: Path, writes: int, readers: int) -> None:
    work = init_work_tree(tmp_path / "writer")
    commits = [commit_file(work, "seed.txt", "seed\n", "seed")]
    run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
    cluster.wait_converged(PATH)

    done = threading.Event()
    failures: list[str] = []
    unknown: list[str] = []
    fetches = [0] * readers

    def reader(n: int) -> None:
        clone = tmp_path / f"reader-{n}"
        url = cluster.git_url(f"proxy-{n % 2 + 2}", PATH)
        run_git("clone", "-q", url, str(clone), cwd=tmp_path)
        while not done.is_set():
            fetched = run_git("fetch", "-q", url, "main", cwd=clone, check=False)
            fetches[n] += 1
            if fetched.returncode != 0:
                failures.append(f"reader {n}: {fetched.stderr.strip()[-300:]}")
                continue
            oid = run_git("rev-parse", "FETCH_HEAD", cwd=clone).stdout.strip()
            if oid not in commits:
                unknown.append(oid)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(readers)]
    for t in threads:
        t.start()
    try:
        for i in range(writes):
            oid = commit_file(work, f"data-{i % 4}.bin", os.urandom(256 * 1024), f"write {i}")
            commits.append(oid)  # before the push: a reader may see it before it is acked
            run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=300)
    converged = cluster.wait_converged(PATH)
    assert not unknown, f"fetched commits the writer never made: {unknown}"
    assert not failures, f"{len(failures)} of {sum(fetches)} fetches failed during writes: {failures[:5]}"
    print(f"{sum(fetches)} fetches during {writes} writes, generation {converged.generation}")


def test_fetches_succeed_while_pushes_are_in_flight(cluster: LocalCluster, tmp_path: Path) -> None:
    run(cluster, tmp_path, writes=30, readers=4)


@pytest.mark.slow
def test_fetches_succeed_while_pushes_are_in_flight_soak(cluster: LocalCluster, tmp_path: Path) -> None:
    run(cluster, tmp_path, writes=200, readers=8)
