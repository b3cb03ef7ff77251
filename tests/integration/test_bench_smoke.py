"""The short version of `make bench`: each benchmark runs end to end at a tiny size
(real clusters, real git, loopback), so a change that breaks one is found by `make
test`, not by the next long benchmark run. Figures are printed, never asserted: speed
is measured by `make bench` (README "Benchmarks"). raft_bench and raft_flood: the
Raft tests in tests/integration/test_metadata_raft.py and test_raft_flood.py run their
code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300

SMALL = {
    "scale_bench": ["--sizes", "200", "--queue", "200", "--live", "20", "--backlog", "0", "--at-size", "20"],
    "proxy_bench": ["--overhead-only", "--commits", "20", "--files", "10", "--runs", "1", "--big-mib", "1"],
    "clone_fleet": ["--clones", "2", "--commits", "20", "--files", "10"],
    "replication_refs": ["--refs", "50", "--commits", "5", "--rounds", "1"],
    "large_push": ["--mib", "2"],
    "replica_copy": ["--repositories", "5", "--in-flight", "2"],
}
# What each must print: its table's header, or its last figure (proxy_bench's table of
# issue #13's ratios names the machine it ran on).
EXPECTED = {
    "scale_bench": (
        "create/s at that size (20 more)",
        "CPU ms per create at 20",
        "primaries it led moved within",
    ),
    "proxy_bench": ("goals (issue #13):", "fetch, up to date", "machine: nproc"),
    "clone_fleet": ("2 clones: wall",),
    "replication_refs": ("one new commit: median",),
    "large_push": ("VmHWM",),
    "replica_copy": ("copy | 5 | 5 |", "fetch | 5 | 0 |"),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_benchmark_runs_end_to_end_at_a_tiny_size(name: str) -> None:
    bench = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *SMALL[name]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its clusters are stopped with it if it hangs
    )
    try:
        output, _ = bench.communicate(timeout=TIMEOUT)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    print(output)
    assert bench.returncode == 0, output[-3000:]
    missing = [text for text in EXPECTED[name] if text not in output]
    assert not missing, (missing, output[-3000:])
