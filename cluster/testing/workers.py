"""Parallel test workers (pytest-xdist) and the port allocator.

`cluster.local.ports` never hands a port out twice within one process and checks it
free when it picks it; a port it handed to a child that is not listening yet (starting,
or killed by a test and about to restart on the same port) looks free to another
process. `make test` runs two workers: `use_worker_slice()` gives each its own slice of
the allocator's range, so two workers never pick the same port.
"""

from __future__ import annotations

import inspect
import os

from cluster.local import ports


def worker_slice(worker: str, count: int, low: int, top: int) -> tuple[int, int] | None:
    """Ports [start, end) for xdist worker `worker` ("gw0", "gw1", ...) of `count`: the
    `count` slices of [low, top) are disjoint and equal. None outside xdist (no worker
    name) or with a single worker: the whole range is this process's."""
    if not worker.startswith("gw") or count < 2:
        return None
    index = int(worker.removeprefix("gw"))
    if not 0 <= index < count:
        raise ValueError(f"worker {worker!r} is not one of {count}")
    span = (top - low) // count
    return low + index * span, low + (index + 1) * span


def use_worker_slice() -> tuple[int, int] | None:
    """In a pytest-xdist worker, make the allocator's default range (free_port,
    free_port_block, ClusterLayout) this worker's slice; returns it (None: unchanged).
    Every port of the suite is picked in the test process (children get theirs in
    their config), so the default bounds cover them all."""
    bounds = worker_slice(
        os.environ.get("PYTEST_XDIST_WORKER", ""),
        int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
        ports.LOW,
        ports.ephemeral_start(),
    )
    if bounds is None:
        return None
    params = list(inspect.signature(ports.free_port_block).parameters)
    if params != ["count", "low", "high"]:
        raise RuntimeError(f"cluster.local.ports.free_port_block's parameters changed: {params}")
    ports.free_port_block.__defaults__ = bounds
    return bounds
