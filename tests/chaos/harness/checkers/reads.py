"""Stale reads and monotonic tips, over every `read` and `push` of a history.

- stale read: a read invoked after push P completed with `ok` must see P's branch at
  P's commit or a descendant of it;
- monotonic: a read invoked after another read completed must see each branch at the
  same commit or a descendant of what the earlier one saw (whatever their proxies).
A read that shows a commit no client made is an anomaly of both kinds ("unknown commit").
"""

from __future__ import annotations

import bisect

from tests.chaos.harness.checkers import Anomaly
from tests.chaos.harness.history import OK, Op
from tests.chaos.harness.workloads import CommitGraph


def _ok_reads(ops: list[Op]) -> list[Op]:
    return [op for op in ops if op.kind == "read" and op.outcome == OK and isinstance(op.value, dict)]


def stale_reads(ops: list[Op], graph: CommitGraph, branches: set[str] | None = None) -> list[Anomaly]:
    """Reads that miss a push acknowledged before they began."""
    acked: dict[str, list[Op]] = {}
    for op in ops:
        if op.kind == "push" and op.outcome == OK and op.complete is not None:
            acked.setdefault(op.args["branch"], []).append(op)
    for pushes in acked.values():
        pushes.sort(key=lambda op: op.complete or 0.0)
    ends = {branch: [p.complete or 0.0 for p in pushes] for branch, pushes in acked.items()}
    anomalies: list[Anomaly] = []
    contained: dict[tuple[str, str | None], int] = {}  # (branch, tip) -> acked prefix it holds
    for read in _ok_reads(ops):
        scope = read.args.get("branches")
        for branch, pushes in acked.items():
            if (branches is not None and branch not in branches) or (
                scope is not None and branch not in scope
            ):
                continue
            before = bisect.bisect_left(ends[branch], read.invoke)
            if not before:
                continue
            tip = read.value.get(branch)
            key = (branch, tip)
            if key not in contained:
                ancestors = graph.ancestors(tip) if tip else set()
                n = 0
                while n < len(pushes) and pushes[n].args["commit"] in ancestors:
                    n += 1
                contained[key] = n
            if contained[key] < before:
                missed = pushes[contained[key]]
                anomalies.append(
                    Anomaly(
                        "stale-read",
                        f"read #{read.id} via {read.proxy} saw {branch} at {tip},"
                        f" without {missed.args['commit']}"
                        f" acknowledged by push #{missed.id} via {missed.proxy} before the read began",
                        [missed.id, read.id],
                    )
                )
    return anomalies


def monotonic_tips(ops: list[Op], graph: CommitGraph) -> list[Anomaly]:
    """Reads that see a branch behind what an earlier completed read saw."""
    reads = _ok_reads(ops)
    by_invoke = sorted(reads, key=lambda op: op.invoke)
    by_complete = sorted(reads, key=lambda op: op.complete or 0.0)
    maximal: dict[str, dict[str, Op]] = {}  # branch -> antichain of tips seen -> a read that saw it
    anomalies: list[Anomaly] = []
    reported: set[tuple[str, str]] = set()
    i = 0
    for read in by_invoke:
        while i < len(by_complete) and (by_complete[i].complete or 0.0) < read.invoke:
            earlier = by_complete[i]
            i += 1
            for branch, tip in earlier.value.items():
                tips = maximal.setdefault(branch, {})
                ancestors = graph.ancestors(tip)
                if any(tip in graph.ancestors(t) for t in tips):
                    continue
                for t in [t for t in tips if t in ancestors]:
                    del tips[t]
                tips[tip] = earlier
        for branch, tip in read.value.items():
            if not graph.known(tip):
                if (branch, tip) not in reported:
                    reported.add((branch, tip))
                    anomalies.append(
                        Anomaly(
                            "monotonic",
                            f"read #{read.id} saw {branch} at {tip}, a commit no client made",
                            [read.id],
                        )
                    )
                continue
            ancestors = graph.ancestors(tip)
            for seen, earlier in maximal.get(branch, {}).items():
                if seen not in ancestors and (branch, seen + tip) not in reported:
                    reported.add((branch, seen + tip))
                    anomalies.append(
                        Anomaly(
                            "monotonic",
                            f"read #{read.id} via {read.proxy} saw {branch} at {tip},"
                            f" not a descendant of {seen}"
                            f" seen by read #{earlier.id} via {earlier.proxy} that completed before it began",
                            [earlier.id, read.id],
                        )
                    )
    return anomalies
