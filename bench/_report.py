"""The overhead table of bench/proxy_bench.py and the goals it checks (issue #13).

Each row holds wall times per target ("plain git", "gateway", "gitraft"); the table
shows median (min-max) per target and the ratios gitraft / plain git and gitraft /
gateway (the gateway: one node behind `gitraft gateway`, no proxy). A goal names a row,
the baseline it is measured against and the highest acceptable ratio.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass

PLAIN, GATEWAY, GITRAFT = "plain git", "gateway", "gitraft"

Row = tuple[str, dict[str, list[float]]]


@dataclass(frozen=True)
class Goal:
    """`row` through gitraft takes at most `limit` times as long as through `baseline`."""

    row: str
    baseline: str
    limit: float


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return seconds(values[0])
    low, high = min(values), max(values)
    spread = f"{low * 1000:.0f}-{seconds(high)}" if high < 1 else f"{seconds(low)}-{seconds(high)}"
    return f"{seconds(statistics.median(values))} ({spread})"


def ratio(times: dict[str, list[float]], baseline: str) -> float | None:
    """median(gitraft) / median(baseline), None when either is missing."""
    if not times.get(GITRAFT) or not times.get(baseline):
        return None
    return statistics.median(times[GITRAFT]) / statistics.median(times[baseline])


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(rows: list[Row], targets: list[str]) -> None:
    """Print the rows: each target's times, then gitraft / plain and gitraft / gateway."""
    header = ["operation", *targets, "gitraft/plain", "gitraft/gateway"]
    body = [
        [name, *(cell(times.get(t, [])) for t in targets), _ratio_text(ratio(times, PLAIN)),
         _ratio_text(ratio(times, GATEWAY))]
        for name, times in rows
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    for r in [header, *body]:
        print("  " + "   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    sys.stdout.flush()


def check_goals(rows: list[Row], goals: list[Goal]) -> None:
    """Print each goal with the measured ratio and whether it is met."""
    by_name = dict(rows)
    print("goals (issue #13):")
    for goal in goals:
        measured = ratio(by_name.get(goal.row, {}), goal.baseline)
        verdict = "not measured" if measured is None else ("met" if measured <= goal.limit else "NOT met")
        print(
            f"  {goal.row}: gitraft <= {goal.limit:.2f}x {goal.baseline}: "
            f"{_ratio_text(measured)} -> {verdict}"
        )
    sys.stdout.flush()
