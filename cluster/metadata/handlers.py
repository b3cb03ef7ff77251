"""Apply functions for storages, repositories, writes and health votes.

Each handler takes the open transaction's connection and the command's `args`, changes
rows deterministically (time and ids come from `args`), and returns a JSON-able
result; it is declared once with `@command` (`cluster.metadata.commands`: op, how the
store's call becomes its args, how its result comes back). A refusal raises
`CommandError`, which `statemachine.apply` turns into an error value after rolling the
command back; nothing here escapes to pysyncobj.
Job commands live in `cluster.metadata.jobs`, write intents in `cluster.metadata.writes`;
commands that change primaries or assignments fence the writes in flight they make
unsafe (`cluster.metadata.fencing`).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from cluster.metadata import fencing, results
from cluster.metadata.api import ChangeType, JobState
from cluster.metadata.commands import command

# `last_error` of a job ended because its repository was removed.
REPOSITORY_REMOVED = "repository removed"


class CommandError(Exception):
    """A command refused: `kind` is not_found | exists | precondition | invalid."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# --- helpers -------------------------------------------------------------------


def repository_row(conn: sqlite3.Connection, repository_id: str) -> sqlite3.Row | tuple[Any, ...]:
    row = conn.execute(
        'SELECT repository_id, relative_path, replica_path, "primary", replication_factor, created_at'
        " FROM repositories WHERE repository_id = ?",
        (repository_id,),
    ).fetchone()
    if row is None:
        raise CommandError("not_found", f"repository {repository_id!r} not found")
    return row


def load_repository(conn: sqlite3.Connection, repository_id: str) -> dict[str, Any]:
    """The repository as a dict shaped like `api.Repository` (replicas sorted by storage)."""
    rid, rel, rpath, primary, factor, created = repository_row(conn, repository_id)
    replicas = [
        {"storage": s, "generation": g}
        for s, g in conn.execute(
            "SELECT storage, generation FROM replicas WHERE repository_id = ? ORDER BY storage", (rid,)
        )
    ]
    return {
        "repository_id": rid,
        "relative_path": rel,
        "replica_path": rpath,
        "primary": primary,
        "replication_factor": factor,
        "created_at": created,
        "replicas": replicas,
    }


def generations(conn: sqlite3.Connection, repository_id: str) -> dict[str, int]:
    """Assigned storage -> generation."""
    rows = conn.execute(
        "SELECT storage, generation FROM replicas WHERE repository_id = ? ORDER BY storage", (repository_id,)
    )
    return {s: g for s, g in rows}


def next_job_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'next_job_id'").fetchone()
    job_id = int(row[0]) if row else 1
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_job_id', ?)", (job_id + 1,))
    return job_id


def schedule_update(
    conn: sqlite3.Connection,
    repository_id: str,
    source: str,
    target: str,
    generation: int,
    now: float,
    params: dict[str, str] | None = None,
) -> None:
    """An `update` job source -> target, merged into a waiting one for the same target.

    A job that is ready or failed (waiting for its retry) is retargeted to the new
    source and generation instead of adding a second job; an in-progress one is left
    alone (it may copy older data) and a new ready job queues behind it."""
    waiting = conn.execute(
        "SELECT id FROM replication_jobs WHERE repository_id = ? AND target = ? AND change = ?"
        " AND state IN (?, ?) ORDER BY id LIMIT 1",
        (repository_id, target, ChangeType.UPDATE, JobState.READY, JobState.FAILED),
    ).fetchone()
    if waiting is not None:
        conn.execute(
            "UPDATE replication_jobs SET source = ?, source_generation = MAX(source_generation, ?),"
            " updated_at = ? WHERE id = ?",
            (source, generation, now, waiting[0]),
        )
        return
    insert_job(conn, repository_id, ChangeType.UPDATE, source, target, generation, now, params)


def insert_job(
    conn: sqlite3.Connection,
    repository_id: str,
    change: ChangeType,
    source: str,
    target: str,
    generation: int,
    now: float,
    params: dict[str, str] | None = None,
) -> int:
    job_id = next_job_id(conn)
    conn.execute(
        "INSERT INTO replication_jobs (id, repository_id, change, source, target, source_generation,"
        " state, params, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job_id,
            repository_id,
            str(change),
            source,
            target,
            generation,
            str(JobState.READY),
            json.dumps(params or {}, sort_keys=True),
            now,
            now,
        ),
    )
    return job_id


def drop_waiting_jobs(conn: sqlite3.Connection, repository_id: str, target: str | None = None) -> None:
    """Delete jobs not yet running for a repository (or one of its targets)."""
    sql = "DELETE FROM replication_jobs WHERE repository_id = ? AND state IN (?, ?)"
    params: list[Any] = [repository_id, JobState.READY, JobState.FAILED]
    if target is not None:
        sql += " AND target = ?"
        params.append(target)
    conn.execute(sql, params)


# --- storages and repositories --------------------------------------------------


@command()
def register_storage(conn: sqlite3.Connection, a: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO storages (name, address) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET address = excluded.address",
        (a["name"], a["address"]),
    )


@command(result=results.repository_from_dict)
def create_repository(conn: sqlite3.Connection, a: dict[str, Any]) -> dict[str, Any]:
    rid, path = a["repository_id"], a["relative_path"]
    storages: list[str] = list(dict.fromkeys(a["storages"]))
    owner = conn.execute("SELECT repository_id FROM repositories WHERE relative_path = ?", (path,)).fetchone()
    if owner is not None and owner[0] != rid:
        raise CommandError("exists", f"relative path {path!r} is taken by repository {owner[0]!r}")
    if conn.execute("SELECT 1 FROM repositories WHERE repository_id = ?", (rid,)).fetchone():
        return load_repository(conn, rid)
    _insert_repository(conn, a, storages, primary_generation=-1)
    return load_repository(conn, rid)


def _insert_repository(
    conn: sqlite3.Connection, a: dict[str, Any], storages: list[str], primary_generation: int
) -> None:
    """The repository row and one replica row per storage (-1, the primary at
    `primary_generation`); `invalid` unless the primary is one of `storages`."""
    rid, primary, now = a["repository_id"], a["primary"], a["now"]
    if not storages or primary not in storages:
        raise CommandError("invalid", f"primary {primary!r} must be one of the storages {storages!r}")
    conn.execute(
        'INSERT INTO repositories (repository_id, relative_path, replica_path, "primary",'
        " replication_factor, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (rid, a["relative_path"], a["replica_path"], primary, int(a["replication_factor"]), now, now),
    )
    conn.executemany(
        "INSERT INTO replicas (repository_id, storage, generation) VALUES (?, ?, ?)",
        [(rid, s, primary_generation if s == primary else -1) for s in storages],
    )


@command(constants={"end_running_jobs": True})
def remove_repository(conn: sqlite3.Connection, a: dict[str, Any]) -> None:
    """Forget the repository; every replica gets a `delete_replica` job (by replica path).

    Its waiting jobs (ready, failed) are deleted. With `end_running_jobs` (always sent
    by the store; entries logged before it existed lack it), its in-progress jobs other
    than `delete_replica` end `completed` with last_error 'repository removed' and no
    owner: their worker can neither renew nor fail them, and its `complete_job` changes
    nothing (see `jobs.complete_job`). In-progress `delete_replica` jobs run on (they
    only remove data). Its fenced write intents in flight are closed as refused (see
    `cluster.metadata.writes`), older ones deleted. Idempotent: an unknown id changes
    nothing."""
    rid, now = a["repository_id"], a["now"]
    row = conn.execute(
        "SELECT relative_path, replica_path FROM repositories WHERE repository_id = ?", (rid,)
    ).fetchone()
    if row is None:
        return  # idempotent: already removed
    drop_waiting_jobs(conn, rid)
    if a.get("end_running_jobs"):
        conn.execute(
            "UPDATE replication_jobs SET state = ?, lease_owner = '', lease_expires_at = 0,"
            " last_error = ?, updated_at = ? WHERE repository_id = ? AND state = ? AND change != ?",
            (
                JobState.COMPLETED,
                REPOSITORY_REMOVED,
                now,
                rid,
                JobState.IN_PROGRESS,
                ChangeType.DELETE_REPLICA,
            ),
        )
    params = {"relative_path": row[0], "replica_path": row[1]}
    for storage in generations(conn, rid):
        insert_job(conn, rid, ChangeType.DELETE_REPLICA, storage, storage, -1, now, params)
    # Explicit rather than ON DELETE CASCADE: the result must not depend on a
    # connection pragma (foreign_keys) being set on every member.
    conn.execute("DELETE FROM replicas WHERE repository_id = ?", (rid,))
    conn.execute("DELETE FROM repositories WHERE repository_id = ?", (rid,))
    # Fenced intents end refused (their proxy's finish_write gets the reason); others go.
    removed = {"generation": -1, "scheduled": [], "fenced": "repository removed during the write"}
    conn.execute(
        "UPDATE write_intents SET result = ? WHERE repository_id = ? AND result IS NULL"
        " AND fence IS NOT NULL",
        (json.dumps(removed), rid),
    )
    conn.execute("DELETE FROM write_intents WHERE repository_id = ? AND result IS NULL", (rid,))


@command()
def rename_repository(conn: sqlite3.Connection, a: dict[str, Any]) -> None:
    """Metadata only: replica paths derive from the id and never move."""
    rid, new = a["repository_id"], a["new_relative_path"]
    repository_row(conn, rid)
    owner = conn.execute("SELECT repository_id FROM repositories WHERE relative_path = ?", (new,)).fetchone()
    if owner is not None and owner[0] != rid:
        raise CommandError("exists", f"relative path {new!r} is taken by repository {owner[0]!r}")
    conn.execute(
        "UPDATE repositories SET relative_path = ?, updated_at = ? WHERE repository_id = ?",
        (new, a["now"], rid),
    )


@command(result=results.repository_from_dict, constants={"require_up_to_date": True})
def set_primary(conn: sqlite3.Connection, a: dict[str, Any]) -> dict[str, Any]:
    """Make `storage` the primary; refused (precondition) unless it is assigned and, with
    `require_up_to_date` (always sent by the store; entries logged before it existed lack
    it), up to date (its generation is the repository's) in the state this command
    applies to, so a write that landed on the old primary after the caller looked wins
    over the move. Moving the primary fences the writes in flight on other storages."""
    rid, storage = a["repository_id"], a["storage"]
    previous = repository_row(conn, rid)[3]
    gens = generations(conn, rid)
    if storage not in gens:
        raise CommandError("precondition", f"storage {storage!r} is not assigned to {rid!r}")
    latest = max(gens.values())
    if a.get("require_up_to_date") and gens[storage] < latest:
        raise CommandError(
            "precondition",
            f"storage {storage!r} is outdated for {rid!r} (generation {gens[storage]} < {latest})",
        )
    conn.execute(
        'UPDATE repositories SET "primary" = ?, updated_at = ? WHERE repository_id = ?',
        (storage, a["now"], rid),
    )
    if storage != previous:
        reason = f"primary moved from {previous!r} to {storage!r} during the write"
        fencing.fence_intents(conn, rid, reason, except_on=[storage])
    return load_repository(conn, rid)


def _factor_or_keep(a: dict[str, Any]) -> dict[str, Any]:
    """`replication_factor` always travels; null (None) keeps the stored one."""
    a.setdefault("replication_factor", None)
    return a


@command(result=results.repository_from_dict, send=_factor_or_keep)
def set_replication_factor(conn: sqlite3.Connection, a: dict[str, Any]) -> dict[str, Any]:
    """Assign storages (a replica at -1 plus an update job from an up-to-date replica)
    and unassign others (a `delete_replica` job; writes in flight there are fenced); the
    primary cannot be unassigned.

    The stored `replication_factor` is the replicas wanted: it becomes the command's
    `replication_factor` (invalid below 1), or stays as it is when that is null (a
    re-assignment). Entries logged before the argument existed lack it: the factor
    becomes the replica count, as it did then."""
    rid, now = a["repository_id"], a["now"]
    _, _, replica_path, primary, stored_factor, _ = repository_row(conn, rid)
    gens = generations(conn, rid)
    unassign = [s for s in dict.fromkeys(a["unassign"]) if s in gens]
    assign = [s for s in dict.fromkeys(a["assign"]) if s not in gens and s not in unassign]
    if primary in unassign:
        raise CommandError("precondition", f"cannot unassign the primary {primary!r}")
    if a.get("replication_factor") is not None and int(a["replication_factor"]) < 1:
        raise CommandError(
            "invalid", f"replication factor must be at least 1, got {a['replication_factor']!r}"
        )
    if len(gens) - len(unassign) + len(assign) < 1:
        raise CommandError("invalid", "a repository needs at least one replica")
    latest = max(gens.values(), default=-1)
    source = primary if gens.get(primary) == latest else min(s for s, g in gens.items() if g == latest)
    if unassign:
        fencing.fence_intents(conn, rid, "storage unassigned during the write", on=unassign)
    for storage in unassign:
        drop_waiting_jobs(conn, rid, storage)
        conn.execute("DELETE FROM replicas WHERE repository_id = ? AND storage = ?", (rid, storage))
        insert_job(
            conn, rid, ChangeType.DELETE_REPLICA, storage, storage, -1, now, {"replica_path": replica_path}
        )
    for storage in assign:
        conn.execute("INSERT INTO replicas (repository_id, storage) VALUES (?, ?)", (rid, storage))
        if latest >= 0:
            schedule_update(conn, rid, source, storage, latest, now)
    factor = _wanted_factor(conn, rid, a, stored_factor)
    conn.execute(
        "UPDATE repositories SET replication_factor = ?, updated_at = ? WHERE repository_id = ?",
        (factor, now, rid),
    )
    return load_repository(conn, rid)


def _wanted_factor(conn: sqlite3.Connection, rid: str, a: dict[str, Any], stored: int) -> int:
    if "replication_factor" not in a:  # logged before the argument existed
        return int(
            conn.execute("SELECT COUNT(*) FROM replicas WHERE repository_id = ?", (rid,)).fetchone()[0]
        )
    return stored if a["replication_factor"] is None else int(a["replication_factor"])


@command(result=int)
def set_generation(conn: sqlite3.Connection, a: dict[str, Any]) -> int:
    """Raise one replica's generation (never lowers it); returns the new value."""
    rid, storage = a["repository_id"], a["storage"]
    gens = generations(conn, rid)
    if storage not in gens:
        raise CommandError("not_found", f"no replica of {rid!r} on {storage!r}")
    new = max(gens[storage], int(a["generation"]))
    conn.execute(
        "UPDATE replicas SET generation = ? WHERE repository_id = ? AND storage = ?", (new, rid, storage)
    )
    return new


def _authoritative(a: dict[str, Any]) -> dict[str, Any]:
    """`accept_dataloss(authoritative_storage=...)` travels as `storage`."""
    a["storage"] = a.pop("authoritative_storage")
    return a


@command(result=results.repository_from_dict, send=_authoritative, constants={"fence": True})
def accept_dataloss(conn: sqlite3.Connection, a: dict[str, Any]) -> dict[str, Any]:
    """`storage` becomes the only newest replica (max+1); every other one gets an update.

    With `fence` (always sent by the store; entries logged before it existed lack it):
    refused (precondition) while a replication job into `storage` runs (its copy would
    replace the content being made authoritative), and writes in flight on other
    storages are fenced."""
    rid, storage, now = a["repository_id"], a["storage"], a["now"]
    gens = generations(conn, rid)
    repository_row(conn, rid)
    if storage not in gens:
        raise CommandError("precondition", f"storage {storage!r} is not assigned to {rid!r}")
    if a.get("fence"):
        running = conn.execute(
            "SELECT id FROM replication_jobs WHERE repository_id = ? AND target = ? AND state = ?"
            " AND change IN (?, ?) AND lease_expires_at > ?",
            (rid, storage, JobState.IN_PROGRESS, ChangeType.UPDATE, ChangeType.CREATE, float(now)),
        ).fetchone()
        if running is not None:
            raise CommandError(
                "precondition",
                f"replication job {running[0]} into {storage!r} is running; retry when it ends",
            )
        fencing.fence_intents(
            conn, rid, f"data loss accepted on {storage!r} during the write", except_on=[storage]
        )
    new = max(gens.values()) + 1
    conn.execute(
        "UPDATE replicas SET generation = ?, needs_verify = 0 WHERE repository_id = ? AND storage = ?",
        (new, rid, storage),
    )
    for other in gens:
        if other != storage:
            schedule_update(conn, rid, storage, other, new, now)
    return load_repository(conn, rid)


# --- health -----------------------------------------------------------------------


@command()
def record_health(conn: sqlite3.Connection, a: dict[str, Any]) -> None:
    """Upsert one proxy's view of one storage; a vote older than the stored one is ignored."""
    conn.execute(
        "INSERT INTO health_votes (proxy, storage, healthy, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (proxy, storage) DO UPDATE SET healthy = excluded.healthy,"
        " updated_at = excluded.updated_at WHERE excluded.updated_at >= health_votes.updated_at",
        (a["proxy"], a["storage"], 1 if a["healthy"] else 0, float(a["now"])),
    )


# --- operator commands (gitraft track-repository) ---------------------------------


@command(result=results.repository_from_dict)
def track_repository(conn: sqlite3.Connection, a: dict[str, Any]) -> dict[str, Any]:
    """Adopt a repository that exists on `primary`'s disk at `replica_path`: the
    repository is created with `primary` at generation 0 (its data is the truth) and
    every other storage at -1 with an `update` job from `primary`, in one command.

    Idempotent for the same repository_id; `exists` when the relative path is taken by
    another id or the replica path is already some repository's; `invalid` when
    `primary` is not one of `storages`."""
    rid, path, replica = a["repository_id"], a["relative_path"], a["replica_path"]
    storages: list[str] = list(dict.fromkeys(a["storages"]))
    if conn.execute("SELECT 1 FROM repositories WHERE repository_id = ?", (rid,)).fetchone():
        return load_repository(conn, rid)
    owner = conn.execute(
        "SELECT repository_id FROM repositories WHERE relative_path = ? OR replica_path = ?", (path, replica)
    ).fetchone()
    if owner is not None:
        raise CommandError("exists", f"{path!r} is already tracked by repository {owner[0]!r}")
    primary, now = a["primary"], a["now"]
    _insert_repository(conn, a, storages, primary_generation=0)
    for target in storages:
        if target != primary:
            insert_job(conn, rid, ChangeType.UPDATE, primary, target, 0, now)
    return load_repository(conn, rid)
