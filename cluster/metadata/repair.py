"""Apply functions of the reconciler and the verifier: repairs, retries, pruning.

- `schedule_repairs`: for each `{repository_id, storage, reset, generation}` item, an
  `update` job from the repository's **current primary** at its generation (the
  repository's latest), so a repair never copies from a replica the fence would not
  accept writes from. Skipped (with a reason in the result) when the repository or the
  replica is gone, the storage is the primary, or the primary is itself outdated. Without
  `reset` the item fixes an *outdated* replica: skipped when it is no longer outdated or
  a job for it is waiting or running (ready, failed, in progress). With `reset` the
  replica was found damaged on disk (missing, or its refs differ from the primary's at
  the same generation): when its generation still equals the item's `generation` (what
  the caller saw), it drops to -1 - it no longer holds that generation's data, and no
  read is routed to it any more - and gets the job (the reconciler's form, for a replica
  missing on disk: the one place a generation goes down). With `reset` and `matching`
  (the verifier's form: the replicas found equal to the primary), the repository's
  generation must still be `generation`; then the primary and the matching replicas
  still there go to `generation` + 1 (their content, now the one generation that holds
  it) and the differing replica, left at `generation`, gets the job at the new
  generation. No generation goes down: the primary may differ from the others because
  a write that failed or whose answer was lost changed its refs, which is no damage of
  theirs. Later items of the same command for the repository only get their job.
- `retry_jobs`: `dead` (and `failed`) jobs named by id, or every dead one with
  `all_dead`, become `ready` with their attempts reset; `last_error` is kept until the
  next attempt. Returns the ids retried.
- `clear_needs_verify`: clears the flag of the (repository_id, storage) pairs given
  (the verifier compared them).
- `prune_jobs`: deletes up to `limit` completed jobs older than `completed_before`,
  and `dead`/`failed` `update`/`create` jobs superseded (their target holds their
  generation or newer, is unassigned, or the repository is gone). Returns counts.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from cluster.metadata import results
from cluster.metadata.api import ChangeType, JobState
from cluster.metadata.commands import command
from cluster.metadata.handlers import generations, schedule_update

_LIVE = (JobState.READY, JobState.FAILED, JobState.IN_PROGRESS)


def _live_job(conn: sqlite3.Connection, repository_id: str, target: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM replication_jobs WHERE repository_id = ? AND target = ? AND state IN (?, ?, ?)"
        " AND change IN (?, ?) LIMIT 1",
        (repository_id, target, *_LIVE, ChangeType.UPDATE, ChangeType.CREATE),
    ).fetchone()
    return row is not None


def _repair_one(conn: sqlite3.Connection, item: dict[str, Any], now: float, raised: dict[str, int]) -> str:
    rid, storage = str(item["repository_id"]), str(item["storage"])
    row = conn.execute('SELECT "primary" FROM repositories WHERE repository_id = ?', (rid,)).fetchone()
    if row is None:
        return "repository removed"
    primary = row[0]
    gens = generations(conn, rid)
    if storage not in gens:
        return "not assigned"
    if storage == primary:
        return "is the primary"
    latest = max(gens.values())
    if gens.get(primary, -1) != latest or latest < 0:
        return "primary outdated"
    if item.get("reset") and "matching" in item:
        return _realign(conn, rid, storage, primary, item, gens, now, raised)
    if item.get("reset"):
        if gens[storage] != int(item["generation"]):
            return "changed meanwhile"
        conn.execute(
            "UPDATE replicas SET generation = -1, needs_verify = 0 WHERE repository_id = ? AND storage = ?",
            (rid, storage),
        )
    elif gens[storage] >= latest:
        return "up to date"
    elif _live_job(conn, rid, storage):
        return "job waiting"
    schedule_update(conn, rid, primary, storage, latest, now)
    return "scheduled"


def _realign(
    conn: sqlite3.Connection,
    rid: str,
    storage: str,
    primary: str,
    item: dict[str, Any],
    gens: dict[str, int],
    now: float,
    raised: dict[str, int],
) -> str:
    """The verifier's form of a reset (see the module doc); `raised` holds the
    repositories an earlier item of this command raised, with their new generation."""
    generation = int(item["generation"])
    if gens[storage] != generation:
        return "changed meanwhile"
    if rid not in raised:
        if max(gens.values()) != generation:
            return "changed meanwhile"
        keep = [
            s
            for s in dict.fromkeys([primary, *item["matching"]])
            if s != storage and gens.get(s) == generation
        ]
        conn.executemany(
            "UPDATE replicas SET generation = ? WHERE repository_id = ? AND storage = ?",
            [(generation + 1, rid, s) for s in keep],
        )
        raised[rid] = generation + 1
    conn.execute(
        "UPDATE replicas SET needs_verify = 0 WHERE repository_id = ? AND storage = ?", (rid, storage)
    )
    schedule_update(conn, rid, primary, storage, raised[rid], now)
    return "scheduled"


@command(result=results.strings)
def schedule_repairs(conn: sqlite3.Connection, a: dict[str, Any]) -> list[str]:
    """One outcome per item, in order: "scheduled" or why not (see the module doc)."""
    now = float(a["now"])
    raised: dict[str, int] = {}
    return [_repair_one(conn, item, now, raised) for item in a["items"]]


@command(result=results.ints)
def retry_jobs(conn: sqlite3.Connection, a: dict[str, Any]) -> list[int]:
    now = float(a["now"])
    if a.get("all_dead"):
        ids = [
            r[0] for r in conn.execute("SELECT id FROM replication_jobs WHERE state = ?", (JobState.DEAD,))
        ]
    else:
        ids = [int(i) for i in a.get("job_ids") or []]
    retried: list[int] = []
    for job_id in ids:
        cur = conn.execute(
            "UPDATE replication_jobs SET state = ?, attempts = 0, retry_at = 0, lease_owner = '',"
            " lease_expires_at = 0, updated_at = ? WHERE id = ? AND state IN (?, ?)",
            (JobState.READY, now, job_id, JobState.DEAD, JobState.FAILED),
        )
        if cur.rowcount:
            retried.append(job_id)
    return retried


@command(result=dict)
def prune_jobs(conn: sqlite3.Connection, a: dict[str, Any]) -> dict[str, int]:
    limit = int(a["limit"])
    completed = conn.execute(
        "DELETE FROM replication_jobs WHERE id IN (SELECT id FROM replication_jobs"
        " WHERE state = ? AND updated_at < ? LIMIT ?)",
        (JobState.COMPLETED, float(a["completed_before"]), limit),
    ).rowcount
    superseded = conn.execute(
        "DELETE FROM replication_jobs WHERE id IN (SELECT j.id FROM replication_jobs j"
        " LEFT JOIN replicas r ON r.repository_id = j.repository_id AND r.storage = j.target"
        " WHERE j.state IN (?, ?) AND j.change IN (?, ?)"
        " AND (r.storage IS NULL OR r.generation >= j.source_generation) LIMIT ?)",
        (JobState.DEAD, JobState.FAILED, ChangeType.UPDATE, ChangeType.CREATE, limit),
    ).rowcount
    return {"completed": completed, "superseded": superseded}


def _nothing_to_clear(a: dict[str, Any]) -> int | None:
    """An empty `clear_needs_verify` is answered without a command."""
    return None if a["replicas"] else 0


@command(result=int, skip=_nothing_to_clear)
def clear_needs_verify(conn: sqlite3.Connection, a: dict[str, Any]) -> int:
    """Clear `needs_verify` on the given [repository_id, storage] pairs; returns how many."""
    cleared = 0
    for rid, storage in a["replicas"]:
        cleared += conn.execute(
            "UPDATE replicas SET needs_verify = 0"
            " WHERE repository_id = ? AND storage = ? AND needs_verify = 1",
            (str(rid), str(storage)),
        ).rowcount
    return cleared
