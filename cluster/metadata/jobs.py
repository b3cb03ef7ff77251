"""Apply functions for the replication queue: lease, renew, complete, fail.

Rules (see `api.JobState` for the transitions):
- A job is leased by at most one owner at a time: leasing sets `lease_owner` and
  `lease_expires_at = now + lease_seconds` (both from the command).
- Leasable: `ready`; `failed` once `now >= retry_at`; `in_progress` whose lease
  expired (its owner died). Re-leasing an expired job counts as a failed attempt, so a
  job whose workers keep dying ends `dead` like one that keeps failing.
- At most one job per (repository, target) is in progress at once; oldest first,
  except that a lease whose command time falls in an even second first takes ready
  jobs created or updated within the last FRESH_SECONDS (among the newest LEASE_PAGE):
  a deep backlog (a node back after hours) delays the replication of new writes by
  about one job's time, not by the whole backlog, and still gets every other second.
  "Updated" counts a new write merged into a waiting `update` job (it keeps its
  creation time: a repository written while its copy runs long stays fresh) and an
  operator's retry; lease commands logged without `fresh_by_update` look at the
  creation time only, as they did.
  `lease_jobs` may carry the storages healthy for the cluster: jobs that need another
  one are skipped (oldest first among the rest).
- A repository's removal deletes its waiting jobs and ends its in-progress ones (see
  `handlers.remove_repository`); completing a job of a removed repository changes
  nothing.
- `fail_job` counts an attempt; at `max_attempts` (carried in the command) the job is
  `dead`, otherwise `failed` until the `retry_at` the caller computed (the replicator:
  `cluster.background.replicator.backoff_seconds`).
- Completing an `update`/`create` job raises the target's generation to the job's
  `source_generation` in the same transaction (never lowers it; a job no newer than the
  target keeps its generation). One that raises it fences
  writes in flight on the target and records the copy in writes in flight on the
  source (`fencing.note_copy`). Completed jobs are pruned after `COMPLETED_RETENTION`
  seconds of command time.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from cluster.metadata import fencing, results
from cluster.metadata.api import ChangeType, JobState
from cluster.metadata.commands import command
from cluster.metadata.handlers import REPOSITORY_REMOVED, CommandError

COMPLETED_RETENTION = 3600.0
# Most candidates `lease_jobs` reads at a time per state (fewer for a small limit).
LEASE_PAGE = 256
# Jobs created this recently (command time) are the replication of new writes.
FRESH_SECONDS = 10.0

JOB_COLUMNS = (
    "id, repository_id, change, source, target, source_generation, state, attempts, lease_owner,"
    " lease_expires_at, retry_at, last_error, created_at, updated_at, params"
)


def job_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    """A replication_jobs row (JOB_COLUMNS order) as a dict shaped like `api.Job`."""
    keys = [k.strip() for k in JOB_COLUMNS.split(",")]
    d = dict(zip(keys, row, strict=True))
    d["params"] = json.loads(d["params"])
    return d


def _load(conn: sqlite3.Connection, job_id: int) -> dict[str, Any]:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM replication_jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise CommandError("not_found", f"job {job_id!r} not found")
    return job_dict(row)


def _held(conn: sqlite3.Connection, job_id: int, owner: str) -> dict[str, Any]:
    job = _load(conn, job_id)
    if job["state"] != JobState.IN_PROGRESS or job["lease_owner"] != owner:
        raise CommandError(
            "precondition", f"job {job_id!r} is not leased by {owner!r} (state {job['state']!r})"
        )
    return job


def _repository_exists(conn: sqlite3.Connection, repository_id: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM repositories WHERE repository_id = ?", (repository_id,)).fetchone()
        is not None
    )


def needs(change: str, source: str, target: str) -> set[str]:
    """The storages a job works on: source and target for `create`/`update`, else the target."""
    return {source, target} if change in (ChangeType.CREATE, ChangeType.UPDATE) else {target}


def _per_target_if_set(a: dict[str, Any]) -> dict[str, Any]:
    """`max_per_target` travels only when set (0 and None: no limit)."""
    if not a.get("max_per_target"):
        a.pop("max_per_target", None)
    return a


@command(
    result=results.job_list,
    send=_per_target_if_set,
    constants={"fresh_by_update": True},
    context=("max_attempts",),
)
def lease_jobs(conn: sqlite3.Connection, a: dict[str, Any]) -> list[dict[str, Any]]:
    """Lease up to `limit` leasable jobs to `owner`, oldest first (see the module doc).

    With `healthy` (a list of storage names) in the command, a job that needs a storage
    not in it (see `needs`) is skipped and left untouched - no lease, no attempt counted,
    its (repository, target) not blocked - so jobs for live nodes are not starved behind
    it. Without `healthy`, every leasable job is eligible (commands logged before the
    argument existed apply as they did). With `max_per_target`, a target storage that
    already has that many unexpired leases gets no more (bounded parallelism per node).

    Candidates are read a page at a time in id order, with the health filter in SQL,
    until `limit` jobs are leased: the cost follows what is leased (plus what is
    skipped for a busy repository), not the length of the queue."""
    owner, now, limit = a["owner"], float(a["now"]), int(a["limit"])
    expires = now + float(a["lease_seconds"])
    max_attempts = int(a.get("max_attempts", 5))
    healthy = None if a.get("healthy") is None else sorted({str(s) for s in a["healthy"]})
    per_target = int(a["max_per_target"]) if a.get("max_per_target") else None
    busy: set[tuple[str, str]] = set()
    running: dict[str, int] = {}
    for r, t in conn.execute(
        "SELECT repository_id, target FROM replication_jobs WHERE state = ? AND lease_expires_at > ?",
        (JobState.IN_PROGRESS, now),
    ):
        busy.add((r, t))
        running[t] = running.get(t, 0) + 1
    leased: list[int] = []

    def take(job_id: int, rid: str, target: str, state: str, tries: int) -> None:
        if len(leased) >= limit or job_id in leased or (rid, target) in busy:
            return
        if per_target is not None and running.get(target, 0) >= per_target:
            return
        attempts = tries
        if state == JobState.IN_PROGRESS:  # the previous owner's lease expired
            attempts += 1
            if attempts >= max_attempts:
                conn.execute(
                    "UPDATE replication_jobs SET state = ?, attempts = ?, lease_owner = '',"
                    " last_error = 'lease expired', updated_at = ? WHERE id = ?",
                    (JobState.DEAD, attempts, now, job_id),
                )
                return
        conn.execute(
            "UPDATE replication_jobs SET state = ?, attempts = ?, lease_owner = ?, lease_expires_at = ?,"
            " updated_at = ? WHERE id = ?",
            (JobState.IN_PROGRESS, attempts, owner, expires, now, job_id),
        )
        busy.add((rid, target))
        running[target] = running.get(target, 0) + 1
        leased.append(job_id)

    if int(now) % 2 == 0:  # every other second, new writes first (see the module doc)
        by = "updated_at" if a.get("fresh_by_update") else "created_at"
        for job_id, rid, _change, _source, target, state, tries in _fresh(conn, now, healthy, by):
            take(job_id, rid, target, state, tries)
    after: int | None = -1
    while after is not None and len(leased) < limit:
        page, after = _candidates(conn, now, healthy, after, page_size(limit))
        for job_id, rid, _change, _source, target, state, tries in page:
            take(job_id, rid, target, state, tries)
    return [_load(conn, job_id) for job_id in leased]


def page_size(limit: int) -> int:
    """Candidates `lease_jobs` reads per state and page for a lease of `limit` jobs: a
    few more than it leases (some are skipped: their repository busy, their target
    full). The size changes what a lease reads, never what it leases (see
    `_candidates`): members applying one entry with different sizes agree."""
    return min(LEASE_PAGE, max(8, 2 * limit))


def _health_filter(healthy: list[str] | None) -> tuple[str, list[Any]]:
    """SQL (and its parameters) keeping the jobs whose storages are all in `healthy`."""
    if healthy is None:
        return "", []
    marks = ",".join("?" * len(healthy))
    sql = f" AND target IN ({marks}) AND (change NOT IN (?, ?) OR source IN ({marks}))"
    return sql, [*healthy, ChangeType.CREATE, ChangeType.UPDATE, *healthy]


def _fresh(
    conn: sqlite3.Connection, now: float, healthy: list[str] | None, by: str = "updated_at"
) -> list[tuple[Any, ...]]:
    """Ready jobs whose `by` column (created_at or updated_at) is within FRESH_SECONDS of
    `now` among the newest LEASE_PAGE, oldest first: the replication of new writes.

    By updated_at (what lease commands send now) with at most LEASE_PAGE fresh jobs
    (counted in the (state, updated_at) index alone; usually a handful, the pushes of
    the last seconds), the fresh jobs are read through that index, and then only the
    ready jobs from the oldest of them on are counted, to drop those beyond the newest
    LEASE_PAGE. Otherwise (many fresh jobs, or by created_at) the newest LEASE_PAGE are
    read (one indexed range, read backwards). Both ways give the same answer
    (`tests/unit/test_lease_paging.py`)."""
    if by not in ("created_at", "updated_at"):
        raise ValueError(f"not a job time column: {by!r}")
    extra, extra_params = _health_filter(healthy)
    since = now - FRESH_SECONDS
    if by == "updated_at" and _fresh_at_most(conn, since, LEASE_PAGE):
        fresh = conn.execute(
            "SELECT id, repository_id, change, source, target, state, attempts FROM replication_jobs"
            f" WHERE state = ? AND updated_at >= ?{extra} ORDER BY id",
            (JobState.READY, since, *extra_params),
        ).fetchall()
        if not fresh:
            return []
        newest_page_ends = conn.execute(
            f"SELECT id FROM replication_jobs WHERE state = ? AND id >= ?{extra}"
            " ORDER BY id DESC LIMIT 1 OFFSET ?",
            (JobState.READY, fresh[0][0], *extra_params, LEASE_PAGE - 1),
        ).fetchone()
        return fresh if newest_page_ends is None else [row for row in fresh if row[0] >= newest_page_ends[0]]
    # The time filter in SQL: the newest LEASE_PAGE are read, only the fresh reach Python.
    return conn.execute(
        "SELECT id, repository_id, change, source, target, state, attempts FROM ("
        f"SELECT id, repository_id, change, source, target, state, attempts, {by} AS at"
        f" FROM replication_jobs WHERE state = ?{extra} ORDER BY id DESC LIMIT ?"
        ") WHERE at >= ? ORDER BY id",
        (JobState.READY, *extra_params, LEASE_PAGE, since),
    ).fetchall()


def _fresh_at_most(conn: sqlite3.Connection, since: float, count: int) -> bool:
    """Whether at most `count` ready jobs were updated at `since` or later (whatever
    their storages): read from the (state, updated_at) index alone, `count` + 1 entries
    at most."""
    (found,) = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM replication_jobs WHERE state = ? AND updated_at >= ? LIMIT ?)",
        (JobState.READY, since, count + 1),
    ).fetchone()
    return int(found) <= count


def _candidates(
    conn: sqlite3.Connection, now: float, healthy: list[str] | None, after: int, size: int
) -> tuple[list[tuple[Any, ...]], int | None]:
    """The next leasable jobs with an id above `after`, in id order, and the id to
    continue after (None when there are no more).

    One indexed range per state ((state, id) index; a single query with OR would
    collect and sort every leasable job), merged; rows past the
    first full branch's last id wait for the next page, so none is skipped. `size` rows
    per branch at most (paging never changes which jobs are leased)."""
    branches: list[tuple[str, list[Any]]] = [
        ("state = ?", [JobState.READY]),
        ("state = ? AND retry_at <= ?", [JobState.FAILED, now]),
        ("state = ? AND lease_expires_at <= ?", [JobState.IN_PROGRESS, now]),
    ]
    extra, extra_params = _health_filter(healthy)
    rows: list[tuple[Any, ...]] = []
    cutoff: int | None = None
    for cond, params in branches:
        got = conn.execute(
            "SELECT id, repository_id, change, source, target, state, attempts FROM replication_jobs"
            f" WHERE {cond} AND id > ?{extra} ORDER BY id LIMIT ?",
            (*params, after, *extra_params, size),
        ).fetchall()
        rows += got
        if len(got) == size:
            cutoff = got[-1][0] if cutoff is None else min(cutoff, got[-1][0])
    rows.sort(key=lambda r: int(r[0]))
    if cutoff is not None:
        rows = [r for r in rows if r[0] <= cutoff]
    return rows, cutoff


@command(result=results.lost_leases)
def renew_leases(conn: sqlite3.Connection, a: dict[str, Any]) -> list[int]:
    """Extend the owner's unexpired leases; returns the ids it no longer holds."""
    owner, now = a["owner"], float(a["now"])
    expires = now + float(a["lease_seconds"])
    lost: list[int] = []
    for job_id in a["job_ids"]:
        cur = conn.execute(
            "UPDATE replication_jobs SET lease_expires_at = ?, updated_at = ?"
            " WHERE id = ? AND state = ? AND lease_owner = ? AND lease_expires_at > ?",
            (expires, now, job_id, JobState.IN_PROGRESS, owner, now),
        )
        if cur.rowcount == 0:
            lost.append(int(job_id))
    return lost


@command(result=results.job_completed, constants={"removed_is_noop": True})
def complete_job(conn: sqlite3.Connection, a: dict[str, Any]) -> dict[str, Any]:
    """Complete a held job (see the module doc); returns the job.

    With `removed_is_noop` (always sent by the store; entries logged before it existed
    lack it), a job (other than `delete_replica`) whose repository no longer exists
    changes nothing in the metadata - no replica row is raised or re-created - whoever
    asks: the result is the job with `repository_removed: True`. If it was still in
    progress (held by `owner`) it ends `completed` with last_error 'repository removed'."""
    job_id, owner, now = int(a["job_id"]), a["owner"], float(a["now"])
    job = _load(conn, job_id)
    removed = job["change"] != ChangeType.DELETE_REPLICA and not _repository_exists(
        conn, job["repository_id"]
    )
    if a.get("removed_is_noop") and removed:
        if job["state"] == JobState.IN_PROGRESS and job["lease_owner"] == owner:
            conn.execute(
                "UPDATE replication_jobs SET state = ?, lease_owner = '', lease_expires_at = 0,"
                " last_error = ?, updated_at = ? WHERE id = ?",
                (JobState.COMPLETED, REPOSITORY_REMOVED, now, job_id),
            )
            job = _load(conn, job_id)
        return dict(job, repository_removed=True)
    job = _held(conn, job_id, owner)
    if job["lease_expires_at"] <= now:
        raise CommandError("precondition", f"lease of job {job_id!r} expired")
    conn.execute(
        "UPDATE replication_jobs SET state = ?, lease_owner = '', updated_at = ? WHERE id = ?",
        (JobState.COMPLETED, now, job_id),
    )
    if job["change"] in (ChangeType.UPDATE, ChangeType.CREATE):
        before = conn.execute(
            "SELECT generation FROM replicas WHERE repository_id = ? AND storage = ?",
            (job["repository_id"], job["target"]),
        ).fetchone()
        conn.execute(
            "UPDATE replicas SET generation = MAX(generation, ?), needs_verify = 0"
            " WHERE repository_id = ? AND storage = ?",
            (job["source_generation"], job["repository_id"], job["target"]),
        )
        if before is not None and before[0] < job["source_generation"]:  # the copy replaced its refs
            fencing.note_copy(conn, job["repository_id"], job["source"], job["target"])
    conn.execute(
        "DELETE FROM replication_jobs WHERE state = ? AND updated_at < ?",
        (JobState.COMPLETED, now - COMPLETED_RETENTION),
    )
    return _load(conn, job_id)


@command(result=results.job_from_dict, context=("max_attempts",))
def fail_job(conn: sqlite3.Connection, a: dict[str, Any]) -> dict[str, Any]:
    job_id, owner, now = int(a["job_id"]), a["owner"], float(a["now"])
    job = _held(conn, job_id, owner)
    attempts = job["attempts"] + 1
    state = JobState.DEAD if attempts >= int(a.get("max_attempts", 5)) else JobState.FAILED
    conn.execute(
        "UPDATE replication_jobs SET state = ?, attempts = ?, lease_owner = '', lease_expires_at = 0,"
        " retry_at = ?, last_error = ?, updated_at = ? WHERE id = ?",
        (state, attempts, float(a["retry_at"]), str(a["error"]), now, job_id),
    )
    return _load(conn, job_id)
