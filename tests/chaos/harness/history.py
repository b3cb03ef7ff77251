"""The history of a chaos run: every client operation with its invoke and complete
times (time.monotonic), the client and the proxy it went through, and its outcome.

Outcomes:
- `ok`: the cluster acknowledged the operation;
- `failed`: it certainly did not take effect (e.g. a push git rejected before sending,
  a compare-and-set whose expected value did not match);
- `unknown`: an error or a timeout: it may or may not have taken effect, now or later.

Nemesis actions are recorded in the same history (client "nemesis"), so a report shows
faults and operations on one time line.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK, FAILED, UNKNOWN = "ok", "failed", "unknown"


@dataclass
class Op:
    """One operation. `value` is what it wrote or read (by kind: see workloads)."""

    id: int
    client: str
    kind: str
    proxy: str
    invoke: float
    args: dict[str, Any] = field(default_factory=dict)
    complete: float | None = None
    outcome: str = UNKNOWN
    value: Any = None
    error: str = ""

    def line(self, t0: float) -> str:
        end = f"{self.complete - t0:8.3f}" if self.complete is not None else "    open"
        err = f" error={self.error[:160]!r}" if self.error else ""
        return (
            f"#{self.id:<5} {self.invoke - t0:8.3f} {end} {self.client:<10} {self.kind:<8}"
            f" via {self.proxy:<8}"
            f" {self.outcome:<7} args={self.args} value={self.value}{err}"
        )


class History:
    """Thread-safe, append-only list of Ops; `t0` is the run's start (monotonic)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.ops: list[Op] = []
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def invoke(self, client: str, kind: str, proxy: str = "", **args: Any) -> Op:
        """Record the start of an operation; complete it with `complete`."""
        with self._lock:
            op = Op(next(self._ids), client, kind, proxy, time.monotonic(), args)
            self.ops.append(op)
        return op

    def complete(self, op: Op, outcome: str, value: Any = None, error: str = "") -> Op:
        op.complete = time.monotonic()
        op.outcome = outcome
        op.value = value
        op.error = error
        return op

    def event(self, client: str, kind: str, **args: Any) -> Op:
        """An instantaneous event (a nemesis action), ok at once."""
        op = self.invoke(client, kind, "", **args)
        return self.complete(op, OK)

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def by_kind(self, *kinds: str) -> list[Op]:
        return [op for op in self.snapshot() if op.kind in kinds]

    def around(self, op_ids: list[int], span: float = 3.0, limit: int = 60) -> str:
        """The operations within `span` seconds of the given ones, as text lines (the
        given ones marked with `>`)."""
        ops = self.snapshot()
        marked = [op for op in ops if op.id in op_ids]
        if not marked:
            return ""
        lo = min(op.invoke for op in marked) - span
        hi = max((op.complete or op.invoke) for op in marked) + span
        near = [op for op in ops if op.id in op_ids or (op.invoke <= hi and (op.complete or hi) >= lo)]
        near.sort(key=lambda op: op.invoke)
        if len(near) > limit:  # keep the marked ones and the nemesis, then the closest
            keep = [op for op in near if op.id in op_ids or op.client == "nemesis"]
            rest = [op for op in near if op not in keep]
            near = sorted(keep + rest[: max(0, limit - len(keep))], key=lambda op: op.invoke)
        return "\n".join(("> " if op.id in op_ids else "  ") + op.line(self.t0) for op in near)

    def save(self, path: Path) -> None:
        """Write the whole history as JSON lines (times relative to t0)."""
        with open(path, "w") as f:
            for op in self.snapshot():
                row = asdict(op)
                row["invoke"] = op.invoke - self.t0
                row["complete"] = None if op.complete is None else op.complete - self.t0
                f.write(json.dumps(row, default=str) + "\n")

    def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {outcome: count}} over client operations (nemesis events excluded)."""
        out: dict[str, dict[str, int]] = {}
        for op in self.snapshot():
            if op.client == "nemesis":
                continue
            out.setdefault(op.kind, {}).setdefault(op.outcome, 0)
            out[op.kind][op.outcome] += 1
        return out
