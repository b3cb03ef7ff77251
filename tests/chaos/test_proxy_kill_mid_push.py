"""A proxy SIGKILLed in the middle of a push (Praefect's "metadata written after the
write", gitaly#3955): the client gets an error or a success; on success the push is in
the cluster; either way every replica ends with the same generation and checksum,
because the write intent the dead proxy left in Raft is found and repaired.

Two moments are hit on purpose, observed on the primary's disk:
- `receiving`: git's quarantine directory for this push has appeared (the pack is on its way); the
  intent was open for sure, so the proxies' `gitraft_proxy_intents_repaired_total`
  must show it repaired;
- `ref-updated`: the primary's branch already points at the new commit (the node
  wrote, the proxy may not have recorded the new generation yet).
Every round asserts that its trigger fired before the kill (a round that missed its
moment proves nothing) and that no write intent is left open afterwards (read from a
live proxy's Raft state database): the dead proxy's intent, if any, was repaired.

The short version (one kill at each moment, in turn) runs in `make test`; the soak version
(`slow`) repeats kills at both moments and at random delays.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cluster.testing import (
    GIT_ENV,
    TEST_PROXY_SETTINGS,
    LocalCluster,
    commit_file,
    init_work_tree,
    remote_refs,
    run_git,
)
from tests.chaos.harness.checkers.metadata import open_intents

PATH = "group/kill-mid-push"
PUSH_BYTES = 8 * 1024 * 1024


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # Intents abandoned by the killed proxy are repaired once their deadline passes:
    # a short write_intent_timeout keeps the test short (our pushes take ~1-2 s).
    settings = {**TEST_PROXY_SETTINGS, "write_intent_timeout": 6.0}
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3, proxy_settings=settings) as c:
        yield c


def primary_replica(cluster: LocalCluster) -> Path:
    repo = cluster.repository(PATH)
    assert repo is not None
    return cluster.nodes[repo.primary].storage_path / repo.replica_path


def branch_on_disk(replica: Path, branch: str = "main") -> str:
    """The branch's commit on a node's disk ("" when unreadable right now)."""
    loose = replica / "refs" / "heads" / branch
    try:
        return loose.read_text().strip()
    except OSError:
        pass
    try:
        for line in (replica / "packed-refs").read_text().splitlines():
            if line.endswith(f" refs/heads/{branch}"):
                return line.split(" ", 1)[0]
    except OSError:
        pass
    return ""


def _quarantines(objects: Path) -> set[str]:
    return {p.name for p in objects.iterdir() if p.name.startswith(("tmp_objdir-incoming", "incoming-"))}


def receiving(replica: Path, new_oid: str) -> Callable[[], bool]:
    """Fires when a quarantine directory appears that was not there when the round
    began: a receive-pack killed in an earlier round leaves its own behind (git cannot
    remove it), which must not count as this push being received."""
    objects = replica / "objects"
    earlier = _quarantines(objects)
    return lambda: bool(_quarantines(objects) - earlier)


def ref_updated(replica: Path, new_oid: str) -> Callable[[], bool]:
    return lambda: branch_on_disk(replica) == new_oid


def after_delay(seconds: float) -> Callable[[Path, str], Callable[[], bool]]:
    def make(replica: Path, new_oid: str) -> Callable[[], bool]:
        start = time.monotonic()
        return lambda: time.monotonic() - start >= seconds

    return make


def big_commit(work: Path, i: int) -> str:
    return commit_file(work, f"blob-{i}.bin", os.urandom(PUSH_BYTES), f"big change {i}")


def push_and_kill(
    cluster: LocalCluster,
    work: Path,
    proxy: str,
    trigger: Callable[[Path, str], Callable[[], bool]],
    new_oid: str,
) -> tuple[int, str, bool]:
    """Push `main` through `proxy`, SIGKILL the proxy when `trigger` fires (or once the
    push ended, if it never fired); returns (git exit code, git stderr, fired)."""
    fired_check = trigger(primary_replica(cluster), new_oid)
    push = subprocess.Popen(
        ["git", "push", "-q", cluster.git_url(proxy, PATH), "main"],
        cwd=work,
        env={**os.environ, **GIT_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fired = False
    try:
        deadline = time.monotonic() + 120
        while push.poll() is None and time.monotonic() < deadline:
            try:
                fired = fired_check()
            except OSError:
                fired = False
            if fired:
                break
            time.sleep(0.002)
        cluster.kill(proxy)
        _, err = push.communicate(timeout=120)
    finally:
        if push.poll() is None:
            push.kill()
            push.wait()
    return push.returncode, err, fired


def intents_repaired(cluster: LocalCluster, exclude: list[str]) -> float:
    """`gitraft_proxy_intents_repaired_total`, summed over the live proxies not excluded."""
    return sum(
        value
        for name in cluster.alive_proxies(exclude)
        for metric, _, value in cluster.proxies[name].metrics()
        if metric == "gitraft_proxy_intents_repaired_total"
    )


def one_round(
    cluster: LocalCluster, work: Path, i: int, proxy: str, trigger: Callable[..., Callable[[], bool]]
) -> str:
    """One push killed mid-way, then the checks; returns the outcome for the report."""
    before = branch_on_disk(primary_replica(cluster))
    repaired_before = intents_repaired(cluster, exclude=[proxy])
    new_oid = big_commit(work, i)
    code, err, fired = push_and_kill(cluster, work, proxy, trigger, new_oid)
    others = cluster.alive_proxies(exclude=[proxy])
    cluster.wait_for_leader(exclude=[proxy])
    assert fired, f"round {i}: the push ended before its trigger fired (git {code}: {err.strip()[-200:]})"
    if trigger is receiving:
        # Killed while the node was still receiving: its write intent was open for sure,
        # and another proxy must find and close it.
        cluster.wait_until(
            lambda: intents_repaired(cluster, exclude=[proxy]) > repaired_before,
            timeout=120,
            what="the dead proxy's write intent repaired",
        )
    # Whatever the moment, no intent stays open: closed by the proxy before it died, or
    # repaired by another one.
    state_db = cluster.proxies[others[0]].spec.data_dir / "raft" / "state.db"
    cluster.wait_until(lambda: open_intents(state_db) == 0, timeout=120, what="no write intent left open")
    converged = cluster.wait_converged(PATH, timeout=120)
    final = remote_refs(cluster.git_url(others[0], PATH), work).get("refs/heads/main")
    if code == 0:
        assert final == new_oid, f"acknowledged push {new_oid} lost: main is {final}"
    else:
        assert final in (before, new_oid), f"main is {final}, neither {before} nor {new_oid}"
    # The dead proxy comes back and serves writes again.
    cluster.start_process(proxy)
    run_git("fetch", "-q", cluster.git_url(proxy, PATH), "main", cwd=work)
    run_git("reset", "-q", "--hard", "FETCH_HEAD", cwd=work)
    repaired = intents_repaired(cluster, exclude=[proxy])
    return (
        f"round {i}: fired={fired} git={code} final={'new' if final == new_oid else 'old'} "
        f"generation={converged.generation} intents repaired so far={repaired:g} {err.strip()[-200:]!r}"
    )


def seed(cluster: LocalCluster, tmp_path: Path) -> Path:
    work = init_work_tree(tmp_path / "work")
    commit_file(work, "README.md", "seed\n", "seed")
    run_git("push", "-q", cluster.git_url("proxy-2", PATH), "main", cwd=work)
    cluster.wait_converged(PATH)
    return work


def test_proxy_killed_mid_push(cluster: LocalCluster, tmp_path: Path) -> None:
    work = seed(cluster, tmp_path)
    outcomes = [one_round(cluster, work, 1, "proxy-1", receiving)]
    outcomes.append(one_round(cluster, work, 2, "proxy-1", ref_updated))
    print("\n".join(outcomes))


@pytest.mark.slow
def test_proxy_killed_mid_push_soak(cluster: LocalCluster, tmp_path: Path) -> None:
    work = seed(cluster, tmp_path)
    # The delayed kills land inside a push: fractions of how long an uncut push of the
    # same size takes here (fixed delays of up to 0.5 s missed an 8 MiB push that a quiet
    # machine finished sooner: 'the push ended before its trigger fired').
    big_commit(work, -1)
    started = time.monotonic()
    run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
    uncut = time.monotonic() - started
    cluster.wait_converged(PATH)
    rng = random.Random(7)
    triggers: list[Callable[..., Callable[[], bool]]] = [receiving, ref_updated]
    triggers += [after_delay(fraction * uncut) for fraction in (0.05, 0.2, 0.5)]
    outcomes = [f"an uncut push took {uncut:.2f} s"]
    for i in range(12):
        proxy = f"proxy-{rng.randint(1, 3)}"
        outcomes.append(one_round(cluster, work, i, proxy, triggers[i % len(triggers)]))
    print("\n".join(outcomes))
