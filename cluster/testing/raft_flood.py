"""A stranger floods Raft ports while a client writes: the scenario of issue #7, finding 3.

    with MetadataCluster(tmp_path, size=3, command_timeout=2.0) as cluster:
        cluster.start()
        report = flood_during_writes(cluster, {"leader": 48 << 20, "follower": 16 << 20})
        print(report.summary())

The stranger knows no password: on each target's Raft port it sends a 4-byte frame
length of 2**31 - 1 (pysyncobj's native-endian `struct.pack("i")` header), then filler,
as fast as the socket takes it, until the member closes the connection or all filler
is sent. Meanwhile one thread commits `record_health` commands through the leader's
control port, one at a time, and records when each one returned.

Shared by tests/integration/test_raft_flood.py and `python -m bench raft_flood`; it
measures, and asserts nothing.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cluster.testing.raft_cluster import MemberProcess, MetadataCluster
from common.errors import UnavailableError

HUGE_LENGTH = 2**31 - 1
CHUNK = 1 << 16


@dataclass
class FloodResult:
    """What a stranger's connections achieved against one member (`filler` bytes
    offered on each connection)."""

    target: str
    filler: int
    connections: int = 0
    closed_by_member: int = 0
    most_sent: int = 0
    peak_rss_kib: int = 0
    peak_rss_before_kib: int = 0


@dataclass
class FloodReport:
    """Commits seen by the writer, and the Raft terms before and after the floods."""

    terms_before: dict[str, int]
    terms_after: dict[str, int]
    leader_before: str
    leader_after: str
    commit_times: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    floods: list[FloodResult] = field(default_factory=list)
    flood_started: float = 0.0
    flood_ended: float = 0.0
    writes_ended: float = 0.0

    def longest_gap(self) -> float:
        """Longest time without a commit, from the flood's start to the writer's end."""
        during = [t for t in self.commit_times if self.flood_started < t < self.writes_ended]
        times = [self.flood_started, *during, self.writes_ended]
        return max(b - a for a, b in itertools.pairwise(times))

    def commits_during_flood(self) -> int:
        return sum(self.flood_started <= t <= self.flood_ended for t in self.commit_times)

    def summary(self) -> str:
        lines = [
            f"longest commit gap (flood start to end of writes): {self.longest_gap() * 1000:.0f} ms",
            f"commits: {len(self.commit_times)} total, {self.commits_during_flood()} during the flood "
            f"({self.flood_ended - self.flood_started:.2f} s); failed commands: {len(self.failures)}",
            f"leader {self.leader_before} -> {self.leader_after}; terms before {self.terms_before} "
            f"after {self.terms_after}",
        ]
        for f in self.floods:
            lines.append(
                f"flood of {f.target}: {f.connections} connection(s) of {f.filler / (1 << 20):.0f} MiB each, "
                f"{f.closed_by_member} closed by the member, "
                f"at most {f.most_sent / (1 << 20):.1f} MiB sent on one; "
                f"member peak RSS {f.peak_rss_kib / 1024:.0f} MiB "
                f"({f.peak_rss_before_kib / 1024:.0f} MiB before the flood)"
            )
        if self.failures:
            lines.append(f"first failures: {self.failures[:3]}")
        return "\n".join(lines)


def peak_rss_kib(member: MemberProcess) -> int:
    """The member process's peak resident set (VmHWM), in KiB; 0 if unknown."""
    if member.process is None or member.process.proc is None:
        return 0
    status = Path(f"/proc/{member.process.proc.pid}/status")
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def flood_once(member: MemberProcess, filler: int) -> tuple[int, bool]:
    """On one connection to `member`'s Raft port, send the huge length, then up to
    `filler` bytes; returns (bytes of filler sent, whether the member closed it)."""
    host, port = member.raft_addr.rsplit(":", 1)
    block = b"\xa5" * CHUNK
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10.0) as sock:
        try:
            sock.sendall(struct.pack("i", HUGE_LENGTH))
            while sent < filler:
                sent += sock.send(block[: filler - sent])
        except OSError:  # reset or broken pipe: the member closed the connection
            return sent, True
        # All sent: did the member close it, or is it still buffering?
        sock.settimeout(2.0)
        try:
            return sent, sock.recv(1) == b""
        except TimeoutError:
            return sent, False
        except OSError:
            return sent, True


def flood(member: MemberProcess, result: FloodResult, duration: float) -> None:
    """Flood `member` on one connection after another for `duration` s (at least once)."""
    deadline = time.monotonic() + duration
    while True:
        sent, closed = flood_once(member, result.filler)
        result.connections += 1
        result.closed_by_member += closed
        result.most_sent = max(result.most_sent, sent)
        if time.monotonic() >= deadline:
            return


def _terms(cluster: MetadataCluster) -> dict[str, int]:
    return {m.name: int(m.status()["term"]) for m in cluster.alive()}


def flood_during_writes(
    cluster: MetadataCluster,
    fillers: dict[str, int],
    duration: float = 3.0,
    settle: float = 1.0,
    before: float = 0.5,
) -> FloodReport:
    """Write through the leader; after `before` s flood the members named by role
    (`"leader"`, `"follower"`) with the given filler size per connection, all at once,
    reconnecting for `duration` s; keep writing `settle` s after the floods end; return
    what was seen."""
    leader = cluster.wait_for_leader()
    cluster.wait_converged()  # every member has heard from the leader: terms agree
    follower = next(m for m in cluster.members if m is not leader)
    targets = {"leader": leader, "follower": follower}
    report = FloodReport(
        terms_before=_terms(cluster), terms_after={}, leader_before=leader.name, leader_after=""
    )
    stop = threading.Event()

    def write_loop() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                leader.call(
                    "record_health", proxy="flood", storage=f"s{i % 7}", healthy=i % 2 == 0, now=float(i)
                )
                report.commit_times.append(time.monotonic())
            except (UnavailableError, OSError) as exc:
                report.failures.append(f"{type(exc).__name__}: {exc}")

    writer = threading.Thread(target=write_loop, name="flood-writer")
    writer.start()
    try:
        time.sleep(before)
        report.floods = [
            FloodResult(role, size, peak_rss_before_kib=peak_rss_kib(targets[role]))
            for role, size in fillers.items()
        ]
        threads = [
            threading.Thread(target=flood, args=(targets[r.target], r, duration), name=f"flood-{r.target}")
            for r in report.floods
        ]
        report.flood_started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report.flood_ended = time.monotonic()
        time.sleep(settle)
    finally:
        stop.set()
        writer.join()
        report.writes_ended = time.monotonic()
    for r in report.floods:
        r.peak_rss_kib = peak_rss_kib(targets[r.target])
    report.terms_after = _terms(cluster)
    report.leader_after = cluster.wait_for_leader().name
    return report
