"""Linearizability of the compare-and-set registers (a Wing & Gong / Lowe search with
memoisation, as Knossos and Porcupine do it).

Each register (op arg `key`) is checked on its own. Model: the register holds a commit
or None (no ref). `cas-read` v: state == v; `cas-write` v: state := v; `cas` (old, new):
requires state == old, then state := new. Operations with outcome:
- ok: must be linearized between their invoke and complete;
- unknown (writes only): may take effect at any point after their invoke, or never;
- failed, and unknown reads: took no effect and constrain nothing (left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tests.chaos.harness.checkers import Anomaly
from tests.chaos.harness.history import OK, UNKNOWN, Op

KINDS = ("cas-read", "cas-write", "cas")


@dataclass
class _Entry:
    op: Op
    start: float
    end: float  # inf for an unknown write
    required: bool


def _step(state: str | None, op: Op) -> tuple[bool, str | None]:
    if op.kind == "cas-read":
        return state == op.value, state
    if op.kind == "cas-write":
        return True, op.args["new"]
    return state == op.args["old"], op.args["new"]


def check_register(ops: list[Op], budget: int = 500_000) -> tuple[bool | None, list[Op]]:
    """(True, []) when linearizable; (False, the ops around where the search got
    furthest) when not; (None, []) when the budget of explored states ran out."""
    entries = []
    for op in ops:
        if op.outcome == OK and op.complete is not None:
            entries.append(_Entry(op, op.invoke, op.complete, True))
        elif op.outcome == UNKNOWN and op.kind != "cas-read":
            entries.append(_Entry(op, op.invoke, math.inf, False))
    entries.sort(key=lambda e: e.start)
    len(entries)
    required_mask = sum(1 << i for i, e in enumerate(entries) if e.required)
    seen: set[tuple[int, str | None]] = set()
    best = (0, 0)  # (linearized count, mask)
    stack: list[tuple[int, str | None]] = [(0, None)]
    explored = 0
    while stack:
        mask, state = stack.pop()
        if mask & required_mask == required_mask:
            return True, []
        if (mask, state) in seen:
            continue
        seen.add((mask, state))
        explored += 1
        if explored > budget:
            return None, []
        count = bin(mask).count("1")
        if count > best[0]:
            best = (count, mask)
        # Candidates: not yet linearized, invoked before every pending required op ended.
        horizon = min(
            (e.end for i, e in enumerate(entries) if not mask >> i & 1 and e.required), default=math.inf
        )
        for i, e in enumerate(entries):
            if mask >> i & 1 or e.start > horizon:
                continue
            legal, new_state = _step(state, e.op)
            if legal:
                stack.append((mask | 1 << i, new_state))
    mask = best[1]
    pending = [e for i, e in enumerate(entries) if not mask >> i & 1 and e.required]
    stuck = min(pending, key=lambda e: e.end) if pending else None
    window = [
        e.op
        for i, e in enumerate(entries)
        if stuck is not None and e.start <= stuck.end and e.end >= stuck.start
    ]
    return False, window


def linearizable(ops: list[Op]) -> tuple[list[Anomaly], dict[str, int]]:
    """Anomalies over every register, and figures: registers, ops checked, inconclusive."""
    registers: dict[str, list[Op]] = {}
    for op in ops:
        if op.kind in KINDS:
            registers.setdefault(op.args["key"], []).append(op)
    anomalies: list[Anomaly] = []
    figures = {"registers": len(registers), "operations": 0, "inconclusive": 0}
    for key, reg_ops in sorted(registers.items()):
        figures["operations"] += len(reg_ops)
        ok, window = check_register(reg_ops)
        if ok is None:
            figures["inconclusive"] += 1
            anomalies.append(
                Anomaly("linearizable", f"register {key}: search budget exhausted ({len(reg_ops)} ops)")
            )
        elif not ok:
            anomalies.append(
                Anomaly(
                    "linearizable",
                    f"register {key}: no linearization of its {len(reg_ops)} operations",
                    [op.id for op in window],
                )
            )
    return anomalies, figures
