"""Short chaos rounds, one per nemesis group (kill, pause, partition, net), every
checker of tests.chaos.harness on the whole history; and the long run (`slow`, `make
chaos`: CHAOS_SECONDS, CHAOS_SEED) with every nemesis at once.

The short rounds share one cluster (started once for the module: each start of six
processes behind relays costs more than a round's faults), each round on its own
repository; every round ends healed and converged, so the next one starts from a
healthy cluster. Once the module is done and the cluster stopped, no process of it
may be left running. The long run starts its own cluster.

A failure prints the seed, the nemesis schedule and the history around each anomaly;
`CHAOS_SEED=<seed>` reproduces the schedule.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness.checkers.convergence import leaked_processes
from tests.chaos.harness.nemesis import ALL_KINDS, GROUPS
from tests.chaos.harness.runner import RunConfig, run
from tests.chaos.harness.topology import ChaosCluster

SHORT_SECONDS = float(os.environ.get("CHAOS_SHORT_SECONDS", "12"))
# A short round's own bound: the first one also starts the shared cluster (up to three
# attempts on a loaded machine), and healing waits up to RunConfig.heal_timeout.
SHORT_TIMEOUT = 600
LONG_SECONDS = float(os.environ.get("CHAOS_SECONDS", "300"))


def _seed(default: int) -> int:
    return int(os.environ.get("CHAOS_SEED", default))


@pytest.fixture(scope="module")
def shared_chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosCluster]:
    """One ChaosCluster for the short rounds; after it stops, none of its processes lives."""
    workdir = tmp_path_factory.mktemp("chaos")
    with ChaosCluster(workdir / "cluster") as chaos:
        yield chaos
    leaked = leaked_processes(chaos.cluster.layout.root)
    assert not leaked, leaked


@pytest.mark.timeout(SHORT_TIMEOUT)
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_short_round(group: str, tmp_path: Path, shared_chaos: ChaosCluster) -> None:
    config = RunConfig(
        seed=_seed(sorted(GROUPS).index(group) + 1),
        seconds=SHORT_SECONDS,
        kinds=GROUPS[group],
        path=f"chaos/{group}",
    )
    report = run(tmp_path, config, shared_chaos)
    print(report.summary())
    print("\n".join(report.applied))
    assert report.applied, "the nemesis injected no fault"
    assert report.ok, report.failure_text()


@pytest.mark.timeout(SHORT_TIMEOUT)
def test_primary_round(tmp_path: Path, shared_chaos: ChaosCluster) -> None:
    """The primary node paused or cut off while writes are in flight to it: the shape
    of the fencing fault (a write that lands on the old primary after a failover)."""
    config = RunConfig(
        seed=_seed(5),
        seconds=SHORT_SECONDS * 1.5,
        kinds=("pause-primary", "partition-primary"),
        shared_writers=1,
        readers=3,
        cas_clients=1,
        think=2.0,
        path="chaos/primary",
    )
    report = run(tmp_path, config, shared_chaos)
    print(report.summary())
    print("\n".join(report.applied))
    assert report.applied, "the nemesis injected no fault"
    assert report.ok, report.failure_text()


@pytest.mark.slow
@pytest.mark.timeout(LONG_SECONDS + 1200)  # the run, then healing and the checkers
def test_long_run(tmp_path: Path) -> None:
    config = RunConfig(seed=_seed(20261202), seconds=LONG_SECONDS, kinds=ALL_KINDS)
    report = run(tmp_path, config)
    print(report.summary())
    print("\n".join(report.applied))
    assert report.applied, "the nemesis injected no fault"
    assert report.ok, report.failure_text()
