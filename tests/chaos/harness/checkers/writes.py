"""Lost writes: every acknowledged push is on its branch at the end, on every assigned
replica, read from each node directly (not through a proxy)."""

from __future__ import annotations

from tests.chaos.harness.checkers import Anomaly
from tests.chaos.harness.history import OK, Op
from tests.chaos.harness.workloads import CommitGraph


def lost_writes(ops: list[Op], graph: CommitGraph, replicas: dict[str, dict[str, str]]) -> list[Anomaly]:
    """`replicas`: {storage: {branch: commit}} as each assigned replica holds them at
    the end. Each acknowledged push's commit must be on its branch on each of them."""
    anomalies: list[Anomaly] = []
    for storage, branches in sorted(replicas.items()):
        ancestors: dict[str, set[str]] = {}
        for op in ops:
            if op.kind != "push" or op.outcome != OK:
                continue
            branch, commit = op.args["branch"], op.args["commit"]
            tip = branches.get(branch)
            if tip is None:
                anomalies.append(
                    Anomaly(
                        "lost-write",
                        f"{storage} has no branch {branch} (push #{op.id} acknowledged)",
                        [op.id],
                    )
                )
                continue
            if tip not in ancestors:
                ancestors[tip] = graph.ancestors(tip)
            if commit not in ancestors[tip]:
                anomalies.append(
                    Anomaly(
                        "lost-write",
                        f"{storage}: {branch} is at {tip}, without {commit} acknowledged by push #{op.id}"
                        f" via {op.proxy}",
                        [op.id],
                    )
                )
    return anomalies
