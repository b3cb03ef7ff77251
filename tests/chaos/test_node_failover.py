"""A storage node SIGKILLed under a client that writes and reads through the proxies.

The client pushes a new commit through proxy-(i % 3 + 1), then reads `main` back
through the next proxy. While the repository's primary is killed and later restarted:
- a read never shows an older commit than the client's last acknowledged push
  (invariant 2: no read from an outdated replica; refusing is allowed);
- once the node is back, every replica converges, and `main` holds the last
  acknowledged push (invariant 1: no acknowledged write lost);
- writes are served again after the failover or the node's return (the loop ends
  with acknowledged pushes);
- reads are refused only while no up-to-date replica is reachable: with a failover, at
  most half the rounds without the node; once it is back and a push is acknowledged,
  none (three more rounds must read and write).

The short version kills the primary twice: once with every replica up to date (a
failover must keep the repository writable) and once right after a push; the soak
(`slow`) runs more cycles, killing the primary or another node.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cluster.testing import LocalCluster, commit_file, init_work_tree, remote_refs, run_git

PATH = "group/failover"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3) as c:
        yield c


@dataclass
class Client:
    """One writer/reader: its commits in order, the acknowledged ones, what it read."""

    work: Path
    commits: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    push_failures: int = 0
    read_failures: int = 0
    stale: list[str] = field(default_factory=list)
    no_failover: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def round(self, cluster: LocalCluster, i: int) -> None:
        oid = commit_file(self.work, "counter.txt", f"{i}\n", f"round {i}")
        self.commits.append(oid)
        pushed = run_git(
            "push", "-q", cluster.git_url(f"proxy-{i % 3 + 1}", PATH), "main", cwd=self.work, check=False
        )
        if pushed.returncode == 0:
            self.acked.append(oid)
        else:
            self.push_failures += 1
        reader = f"proxy-{(i + 1) % 3 + 1}"
        try:
            seen = remote_refs(cluster.git_url(reader, PATH), self.work, timeout=60).get(
                "refs/heads/main", ""
            )
        except RuntimeError as exc:
            self.read_failures += 1
            self.refusals.append(f"round {i} via {reader}: {str(exc)[-200:]}")
            return
        # The newest commit it may see is the one just made; the oldest, the last acked.
        oldest = self.commits.index(self.acked[-1])
        if seen not in self.commits[oldest:]:
            self.stale.append(f"round {i} via {reader}: {seen}, last acknowledged {self.acked[-1]}")


def seed(cluster: LocalCluster, tmp_path: Path) -> Client:
    work = init_work_tree(tmp_path / "work")
    client = Client(work)
    client.commits.append(commit_file(work, "counter.txt", "seed\n", "seed"))
    run_git("push", "-q", cluster.git_url("proxy-1", PATH), "main", cwd=work)
    client.acked.append(client.commits[-1])
    cluster.wait_converged(PATH)
    return client


def check_end(cluster: LocalCluster, client: Client) -> None:
    converged = cluster.wait_converged(PATH, timeout=120)
    assert not client.stale, f"reads older than the last acknowledged push: {client.stale}"
    final = remote_refs(cluster.git_url("proxy-2", PATH), client.work)["refs/heads/main"]
    assert final in client.commits[client.commits.index(client.acked[-1]) :], (
        f"main is {final}; the last acknowledged push {client.acked[-1]} is lost"
    )
    print(
        f"{len(client.acked)} acked, {client.push_failures} pushes and {client.read_failures} reads "
        f"refused, generation {converged.generation}"
    )
    assert not client.no_failover, (
        f"the repository stayed unwritable without its primary: {client.no_failover}"
    )


def kill_cycle(
    cluster: LocalCluster, client: Client, victim: str, start: int, rounds: int, expect_failover: bool
) -> int:
    """Kill `victim`, write and read for `rounds`, restart it, write until a push is
    acknowledged again (bounded); returns the next round number.

    With `expect_failover` (every replica was up to date when `victim` died) some push
    must be acknowledged while it is down - another up-to-date replica takes over - or
    `client.no_failover` says otherwise (checked last, after the safety checks)."""
    i = start
    cluster.kill(victim)
    acked_before = len(client.acked)
    refused_before = client.read_failures
    for _ in range(rounds):
        client.round(cluster, i)
        i += 1
    if expect_failover and len(client.acked) == acked_before:
        client.no_failover.append(f"no push acknowledged in {rounds} rounds without {victim}")
    refused = client.read_failures - refused_before
    if expect_failover:
        # Another up-to-date replica serves reads once the failure is noticed.
        assert refused <= rounds // 2, (
            f"{refused} of {rounds} reads refused without {victim} although a replica was up to date: "
            f"{client.refusals[-refused:]}"
        )
    cluster.start_process(victim)
    acked_before = len(client.acked)
    for _ in range(60):
        client.round(cluster, i)
        i += 1
        if len(client.acked) > acked_before:
            break
    assert len(client.acked) > acked_before, f"no push acknowledged after {victim} came back"
    # Back to normal: every read and every push served.
    refused_before, acked_before = client.read_failures, len(client.acked)
    for _ in range(3):
        client.round(cluster, i)
        i += 1
    assert client.read_failures == refused_before, (
        f"reads still refused after {victim} came back: {client.refusals[-3:]}"
    )
    assert len(client.acked) == acked_before + 3, f"pushes still refused after {victim} came back"
    return i


def primary(cluster: LocalCluster) -> str:
    repo = cluster.repository(PATH)
    assert repo is not None
    return repo.primary


def test_primary_killed_under_writes_and_reads(cluster: LocalCluster, tmp_path: Path) -> None:
    client = seed(cluster, tmp_path)
    i = 0
    for _ in range(3):
        client.round(cluster, i)
        i += 1
    # Every replica up to date: a failover keeps the repository writable.
    cluster.wait_converged(PATH)
    i = kill_cycle(cluster, client, primary(cluster), i, rounds=15, expect_failover=True)
    # Killed right after a push: its replication may not have happened yet, then the
    # repository must be refused rather than served stale until the node is back.
    client.round(cluster, i)
    kill_cycle(cluster, client, primary(cluster), i + 1, rounds=5, expect_failover=False)
    check_end(cluster, client)


@pytest.mark.slow
def test_nodes_killed_under_writes_and_reads_soak(cluster: LocalCluster, tmp_path: Path) -> None:
    client = seed(cluster, tmp_path)
    rng = random.Random(11)
    i = 0
    for cycle in range(8):
        for _ in range(5):
            client.round(cluster, i)
            i += 1
        converged = cycle % 2 == 0
        if converged:
            cluster.wait_converged(PATH, timeout=120)
        victim = primary(cluster) if cycle % 4 < 2 else rng.choice(sorted(cluster.nodes))
        rounds = rng.randint(5, 15)
        i = kill_cycle(cluster, client, victim, i, rounds, expect_failover=converged)
    check_end(cluster, client)
