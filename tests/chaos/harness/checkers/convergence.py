"""Convergence after healing: within a bound, every assigned replica of the repository
has the repository's generation and all checksums are equal (DESIGN.md invariants 5
and 7), `git fsck` is clean on every replica, no replication job is left ready or in
progress; after the cluster stopped, no process of it is left running."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from cluster.testing import GIT_ENV, LocalCluster
from tests.chaos.harness.checkers import Anomaly

ACTIVE_JOBS = ("ready", "in_progress")


def converged(cluster: LocalCluster, relative_path: str, timeout: float) -> tuple[list[Anomaly], float]:
    """Wait (bounded) for equal generations, equal checksums and no active job;
    anomalies when the bound passes, and the seconds it took."""
    start = time.monotonic()
    try:
        cluster.wait_converged(relative_path, timeout=timeout)
        remaining = max(5.0, timeout - (time.monotonic() - start))
        cluster.wait_until(
            lambda: not any(j.state in ACTIVE_JOBS for j in cluster.jobs()),
            timeout=remaining,
            what="no replication job ready or in progress",
        )
        cluster.wait_converged(relative_path, timeout=remaining)
    except TimeoutError as exc:
        return [
            Anomaly("convergence", f"not converged {timeout:g}s after healing: {exc}")
        ], time.monotonic() - start
    return [], time.monotonic() - start


def fsck(cluster: LocalCluster, relative_path: str) -> list[Anomaly]:
    """`git fsck` on every assigned replica, on the node's disk."""
    repo = cluster.repository(relative_path, timeout=30.0)  # a check, not a latency bound
    if repo is None:
        return [Anomaly("convergence", f"the cluster does not know {relative_path!r}")]
    anomalies = []
    for replica in repo.replicas:
        path = cluster.nodes[replica.storage].storage_path / repo.replica_path
        done = subprocess.run(
            ["git", "fsck", "--no-dangling", "--no-progress"],
            cwd=path,
            env={**os.environ, **GIT_ENV},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            anomalies.append(
                Anomaly(
                    "convergence", f"git fsck on {replica.storage}: {done.stdout[-300:]}{done.stderr[-300:]}"
                )
            )
    return anomalies


def leaked_processes(root: Path) -> list[Anomaly]:
    """Processes whose command line names a path under `root` (the cluster's files)."""
    marker = str(root).encode()
    anomalies = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            shown = cmdline.replace(b"\x00", b" ").decode(errors="replace")[:200]
            anomalies.append(Anomaly("convergence", f"process {entry.name} left running: {shown}"))
    return anomalies
