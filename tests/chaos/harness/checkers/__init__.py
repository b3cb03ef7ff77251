"""Checkers of a chaos run. Each takes the whole history (and what it needs of the
end state) and returns a list of `Anomaly`; an empty list means the property held.

| checker | module | property |
| --- | --- | --- |
| stale-read | reads | a read that began after a push was acknowledged contains it |
| monotonic | reads | a branch seen at X is never seen later at an ancestor of X |
| lost-write | writes | every acknowledged commit is on its branch on every assigned replica |
| linearizable | linear | the compare-and-set register's history is linearizable |
| convergence | convergence | after healing: equal generations and checksums, fsck clean, |
| | | no job left, no process leaked |
| metadata | metadata | every proxy's state machine is identical at the same applied index |
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Anomaly:
    """One violation: the checker, what was wrong, and the operations involved."""

    checker: str
    message: str
    op_ids: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        ops = f" (ops {self.op_ids})" if self.op_ids else ""
        return f"[{self.checker}] {self.message}{ops}"
