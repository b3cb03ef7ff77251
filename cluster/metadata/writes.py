"""Apply functions for writes: begin_write, renew_intent, finish_write (DESIGN.md "Write").

A write intent is committed before a mutator reaches a node and closed by
`finish_write`, which records the outcome. With fencing (`begin_write` with `fence`,
always sent by the store; entries logged before it existed lack it and apply as they
always did) the intent records the storage that executes the write and the primary and
generation at begin (see `cluster.metadata.fencing`), and `finish_write` acknowledges
the write - bumps the storage to max+1 and schedules every other replica - only if:

- nothing marked the intent fenced meanwhile (the primary moved away, data loss was
  accepted elsewhere, the storage was unassigned or overwritten by replication, another
  write committed on another storage, the repository was removed);
- the storage was the primary when the intent began and still is;
- it is up to date (no write it lacks committed since).

Otherwise the result carries `fenced` (the reason; nothing acknowledged) and the storage
is treated as *diverged* (`diverge`): flagged for a checksum comparison and repaired
from a replica that cannot hold the write, so its content never counts as a generation
that others hold with different content.

An intent closed by the leader's repair (`finish_write` with `repair`) that its own
proxy then reports as succeeded is fenced the same way: the write may have landed after
the repair looked.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from cluster.metadata import fencing, results
from cluster.metadata.api import ChangeType, JobState
from cluster.metadata.commands import command
from cluster.metadata.handlers import CommandError, generations, repository_row, schedule_update

# Closed write intents are kept this long (seconds of command time) so a retried
# finish_write still finds its result, then pruned.
INTENT_RETENTION = 3600.0


def _fence_single(a: dict[str, Any]) -> dict[str, Any]:
    """A write executed by one storage (every mutator today) is fenced."""
    a["fence"] = len(a["storages"]) == 1
    return a


@command(result=results.intent_from_dict, send=_fence_single)
def begin_write(conn: sqlite3.Connection, a: dict[str, Any]) -> dict[str, Any]:
    iid, rid = a["intent_id"], a["repository_id"]
    row = conn.execute(
        "SELECT intent_id, repository_id, proxy, storages, deadline FROM write_intents WHERE intent_id = ?",
        (iid,),
    ).fetchone()
    if row is None:
        primary = repository_row(conn, rid)[3]
        storages = list(dict.fromkeys(a["storages"]))
        gens = generations(conn, rid)
        missing = [s for s in storages if s not in gens]
        if missing:
            raise CommandError("precondition", f"storages {missing!r} are not assigned to {rid!r}")
        fence = None
        if a.get("fence"):
            if len(storages) != 1:
                raise CommandError("invalid", f"a fenced write executes on one storage, not {storages!r}")
            reason = None if storages[0] == primary else f"storage {storages[0]!r} is not the primary"
            record = {"storage": storages[0], "primary": primary, "generation": max(gens.values())}
            fence = json.dumps(dict(record, fenced=reason, copied_to=[]), sort_keys=True)
        conn.execute(
            "INSERT INTO write_intents (intent_id, repository_id, proxy, storages, deadline, fence)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (iid, rid, a["proxy"], json.dumps(storages), float(a["deadline"]), fence),
        )
        row = (iid, rid, a["proxy"], json.dumps(storages), float(a["deadline"]))
    return {
        "intent_id": row[0],
        "repository_id": row[1],
        "proxy": row[2],
        "storages": json.loads(row[3]),
        "deadline": row[4],
    }


@command(result=bool)
def renew_intent(conn: sqlite3.Connection, a: dict[str, Any]) -> bool:
    """Move an open intent's deadline to `deadline` (never earlier); False when the
    intent is closed or unknown (its write can no longer be acknowledged)."""
    cur = conn.execute(
        "UPDATE write_intents SET deadline = MAX(deadline, ?) WHERE intent_id = ? AND result IS NULL",
        (float(a["deadline"]), a["intent_id"]),
    )
    return cur.rowcount == 1


def _repair_if_set(a: dict[str, Any]) -> dict[str, Any]:
    """`repair` travels only when true (as before the argument existed)."""
    if not a.get("repair"):
        a.pop("repair", None)
    return a


@command(result=results.write_result, send=_repair_if_set, context=("correlation_id",))
def finish_write(conn: sqlite3.Connection, a: dict[str, Any]) -> dict[str, Any]:
    """Close an intent: bump the writers, schedule the others, flag the failed ones (see
    the module doc for the fence). Idempotent on the intent: a second close returns the
    first result, except a success reported after a repair closed it (fenced).

    With `repair` (the leader closing an abandoned intent), refused (precondition) when
    the intent's deadline is not before the command's `now`: it was renewed since."""
    iid, now = a["intent_id"], a["now"]
    row = conn.execute(
        "SELECT repository_id, result, fence, deadline FROM write_intents WHERE intent_id = ?", (iid,)
    ).fetchone()
    if row is None:
        raise CommandError("not_found", f"write intent {iid!r} not found")
    rid, stored, raw_fence, deadline = row
    fence = None if raw_fence is None else dict(json.loads(raw_fence))
    repair = bool(a.get("repair"))
    if stored is not None:
        first = dict(json.loads(stored))
        if fence is None or repair or not first.get("repaired") or not a["succeeded"]:
            return first
        # The proxy that ran the write reports success after the leader repaired its
        # intent: the write may have landed after the repair compared checksums.
        result = _refuse(conn, rid, fence, "the write's intent was repaired before the write ended", now)
        return _close(conn, iid, result, now, repair=False, store=False)
    if repair and deadline >= now:
        raise CommandError("precondition", f"write intent {iid!r} was renewed (deadline {deadline})")
    repository_row(conn, rid)
    gens = generations(conn, rid)
    succeeded = [s for s in dict.fromkeys(a["succeeded"]) if s in gens]
    failed = [s for s in dict.fromkeys(a["failed"]) if s in gens and s not in succeeded]
    reason = _fence_reason(conn, rid, fence, a["succeeded"], gens) if fence is not None else None
    if reason is not None:
        result = _refuse(conn, rid, fence or {}, reason, now)
    else:
        params = {"correlation_id": a["correlation_id"]} if a.get("correlation_id") else None
        result = _record(conn, rid, succeeded, failed, gens, now, params)
        if fence is not None and succeeded:
            fencing.fence_intents(
                conn, rid, f"a write on {succeeded[0]!r} committed during the write", except_on=succeeded
            )
    return _close(conn, iid, result, now, repair=repair)


def _fence_reason(
    conn: sqlite3.Connection, rid: str, fence: dict[str, Any], reported: list[str], gens: dict[str, int]
) -> str | None:
    """Why a write reported as succeeded on `reported` may not be acknowledged (None: it may)."""
    if not reported:
        return None  # nothing to acknowledge: a failed write or a no-op close
    storage, primary = fence["storage"], repository_row(conn, rid)[3]
    if fence.get("fenced"):
        return str(fence["fenced"])
    if any(s != storage for s in reported):
        return f"write reported on {reported!r}, its intent executes on {storage!r}"
    if storage not in gens:
        return f"storage {storage!r} was unassigned during the write"
    if fence["primary"] != storage or primary != storage:
        return f"primary moved from {storage!r} to {primary!r} during the write"
    if gens[storage] < max(gens.values()):
        return "another write committed on the repository during the write"
    return None


def _record(
    conn: sqlite3.Connection,
    rid: str,
    succeeded: list[str],
    failed: list[str],
    gens: dict[str, int],
    now: float,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The acknowledged outcome: `succeeded` to max+1, updates for the others (carrying
    `params`, e.g. the write's correlation id), `failed` flagged."""
    generation = max(gens.values(), default=-1)
    scheduled: list[str] = []
    if succeeded:
        generation += 1
        conn.executemany(
            "UPDATE replicas SET generation = ?, needs_verify = 0 WHERE repository_id = ? AND storage = ?",
            [(generation, rid, s) for s in succeeded],
        )
        for target in gens:
            if target not in succeeded:
                schedule_update(conn, rid, succeeded[0], target, generation, now, params)
                scheduled.append(target)
    conn.executemany(
        "UPDATE replicas SET needs_verify = 1 WHERE repository_id = ? AND storage = ?",
        [(rid, s) for s in failed],
    )
    return {"generation": generation, "scheduled": scheduled}


def _refuse(
    conn: sqlite3.Connection, rid: str, fence: dict[str, Any], reason: str, now: float
) -> dict[str, Any]:
    """A fenced outcome: nothing acknowledged; the write's storage (and the replicas that
    copied from it meanwhile) diverged and are repaired."""
    if not conn.execute("SELECT 1 FROM repositories WHERE repository_id = ?", (rid,)).fetchone():
        return {"generation": -1, "scheduled": [], "fenced": reason}
    dirty = [fence["storage"], *fence.get("copied_to", [])] if fence else []
    generation, scheduled = diverge(conn, rid, dirty, now)
    return {"generation": generation, "scheduled": scheduled, "fenced": reason}


def diverge(conn: sqlite3.Connection, rid: str, dirty: list[str], now: float) -> tuple[int, list[str]]:
    """Replicas in `dirty` may hold a write that is not acknowledged: flag them for a
    checksum comparison and have them overwritten (an `update` job mirrors refs exactly)
    from a replica that cannot hold it; an update into one of them already in progress
    goes back to `failed` (no owner, retry now) so it cannot raise it with a copy made
    before the write. Returns (repository generation, storages scheduled).

    Let M be the repository's generation. When no dirty replica is at M, each dirty one
    gets an update from an up-to-date replica. Otherwise the clean replicas at M (same
    content) go to M+1 without any data change, so no dirty replica counts as up to date,
    and every other replica gets an update from one of them (the primary if it is one).
    When every replica at M is dirty there is no copy without the write to restore: the
    primary (or the first of them) goes to M+1 and the others follow it - the write's
    outcome is then unknown, as for any write that was not acknowledged."""
    gens = generations(conn, rid)
    dirty = [s for s in dict.fromkeys(dirty) if s in gens]
    if not dirty:
        return max(gens.values(), default=-1), []
    primary = repository_row(conn, rid)[3]
    conn.executemany(
        "UPDATE replicas SET needs_verify = 1 WHERE repository_id = ? AND storage = ?",
        [(rid, s) for s in dirty],
    )
    # A copy into a dirty replica already running may have been made before the write
    # landed there: it must not raise the replica. The job waits to copy again (its
    # worker loses the lease; no attempt counted).
    marks = ",".join("?" * len(dirty))
    conn.execute(
        f"UPDATE replication_jobs SET state = ?, lease_owner = '', lease_expires_at = 0, retry_at = ?,"
        f" last_error = ?, updated_at = ? WHERE repository_id = ? AND state = ? AND change IN (?, ?)"
        f" AND target IN ({marks})",
        (
            JobState.FAILED,
            now,
            "target diverged during the copy; copy again",
            now,
            rid,
            JobState.IN_PROGRESS,
            ChangeType.UPDATE,
            ChangeType.CREATE,
            *dirty,
        ),
    )
    top = max(gens.values())
    current = [s for s, g in gens.items() if g == top]
    clean = [s for s in current if s not in dirty]
    if not any(s in current for s in dirty):
        source = primary if primary in clean else clean[0]
        for target in dirty:
            schedule_update(conn, rid, source, target, top, now)
        return top, list(dirty)
    raised = clean or [primary if primary in current else current[0]]
    source = primary if primary in raised else raised[0]
    conn.executemany(
        "UPDATE replicas SET generation = ? WHERE repository_id = ? AND storage = ?",
        [(top + 1, rid, s) for s in raised],
    )
    scheduled = [s for s in gens if s not in raised]
    for target in scheduled:
        schedule_update(conn, rid, source, target, top + 1, now)
    return top + 1, scheduled


def _close(
    conn: sqlite3.Connection,
    iid: str,
    result: dict[str, Any],
    now: float,
    *,
    repair: bool,
    store: bool = True,
) -> dict[str, Any]:
    """Store the intent's result (marked `repaired` when the repair closed it) and prune old ones."""
    if store:
        saved = dict(result, repaired=True) if repair else result
        conn.execute("UPDATE write_intents SET result = ? WHERE intent_id = ?", (json.dumps(saved), iid))
    conn.execute(
        "DELETE FROM write_intents WHERE result IS NOT NULL AND deadline < ?", (now - INTENT_RETENTION,)
    )
    return result
