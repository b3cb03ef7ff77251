"""Read-only queries of the metadata database, for the event loop (aiosqlite).

They read this proxy's *applied* state: call `RaftMetadataStore.barrier()` first where
routing needs state at least as new as every acknowledged write. Every function takes
an open `aiosqlite.Connection` and returns `api` dataclasses; times (`now`) come from
the caller, so the same database and arguments always give the same answer.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import aiosqlite

from cluster.metadata.api import (
    ChangeType,
    HealthVote,
    Job,
    JobState,
    Replica,
    Repository,
    Storage,
    WriteIntent,
)
from cluster.metadata.jobs import JOB_COLUMNS, job_dict
from cluster.metadata.results import job_from_dict

_REPO_COLUMNS = 'repository_id, relative_path, replica_path, "primary", replication_factor, created_at'


async def _repositories(
    db: aiosqlite.Connection, where: str = "", params: tuple[Any, ...] = ()
) -> list[Repository]:
    order = "" if "ORDER BY" in where else " ORDER BY relative_path"
    rows = list(await db.execute_fetchall(f"SELECT {_REPO_COLUMNS} FROM repositories {where}{order}", params))
    if not rows:
        return []
    replicas: dict[str, list[Replica]] = defaultdict(list)
    if len(rows) == 1:  # the common case: one repository, by its primary key
        found = await db.execute_fetchall(
            "SELECT repository_id, storage, generation FROM replicas WHERE repository_id = ?"
            " ORDER BY storage",
            (rows[0][0],),
        )
    else:  # a subquery, not one parameter per repository (SQLite caps parameters)
        found = await db.execute_fetchall(
            "SELECT repository_id, storage, generation FROM replicas WHERE repository_id IN"
            f" (SELECT repository_id FROM repositories {where}) ORDER BY storage",
            params,
        )
    for rid, storage, gen in found:
        replicas[rid].append(Replica(storage, gen))
    return [Repository(*r, replicas=tuple(replicas[r[0]])) for r in rows]  # type: ignore[misc]


async def storages(db: aiosqlite.Connection) -> list[Storage]:
    return [
        Storage(n, a)
        for n, a in await db.execute_fetchall("SELECT name, address FROM storages ORDER BY name")
    ]


async def get_repository(db: aiosqlite.Connection, relative_path: str) -> Repository | None:
    found = await _repositories(db, "WHERE relative_path = ?", (relative_path,))
    return found[0] if found else None


async def get_repository_by_id(db: aiosqlite.Connection, repository_id: str) -> Repository | None:
    found = await _repositories(db, "WHERE repository_id = ?", (repository_id,))
    return found[0] if found else None


async def list_repositories(db: aiosqlite.Connection) -> list[Repository]:
    return await _repositories(db)


async def healthy_storages(db: aiosqlite.Connection, now: float, window: float) -> set[str]:
    """Storages seen healthy by a strict majority of live proxies.

    A proxy is live while its newest vote (any storage) is younger than `window`, by the
    proxies' own clocks (`now` travels in each vote): their skew must stay well below
    `window`, and each proxy must refresh its votes more often than `window`."""
    live = {
        p
        for (p,) in await db.execute_fetchall(
            "SELECT proxy FROM health_votes GROUP BY proxy HAVING MAX(updated_at) > ?", (now - window,)
        )
    }
    if not live:
        return set()
    votes: dict[str, int] = defaultdict(int)
    for proxy, storage in await db.execute_fetchall(
        "SELECT proxy, storage FROM health_votes WHERE healthy = 1"
    ):
        if proxy in live:
            votes[storage] += 1
    return {s for s, n in votes.items() if n * 2 > len(live)}


async def health_votes(db: aiosqlite.Connection) -> dict[str, dict[str, HealthVote]]:
    """Every recorded vote: proxy -> storage -> its latest vote (stale ones included)."""
    votes: dict[str, dict[str, HealthVote]] = defaultdict(dict)
    for proxy, storage, healthy, updated_at in await db.execute_fetchall(
        "SELECT proxy, storage, healthy, updated_at FROM health_votes ORDER BY proxy, storage"
    ):
        votes[proxy][storage] = HealthVote(bool(healthy), float(updated_at))
    return dict(votes)


async def up_to_date_replicas(db: aiosqlite.Connection, repository_id: str) -> list[str]:
    repo = await get_repository_by_id(db, repository_id)
    return list(repo.up_to_date()) if repo else []


async def valid_primaries(
    db: aiosqlite.Connection, repository_id: str, now: float, window: float
) -> list[str]:
    healthy = await healthy_storages(db, now, window)
    return [s for s in await up_to_date_replicas(db, repository_id) if s in healthy]


async def dataloss(
    db: aiosqlite.Connection, now: float, window: float, include_partial: bool
) -> tuple[list[Repository], list[Repository]]:
    """(unavailable, partially available) repositories; see `MetadataStore.dataloss`.

    Only repositories with a replica on an unhealthy storage or an outdated replica can
    be either, so they are found through the `replicas_by_storage` and
    `outdated_replicas` indexes: the cost follows the answer, not the repository count."""
    healthy = await healthy_storages(db, now, window)
    ids: set[str] = {r for (r,) in await db.execute_fetchall("SELECT repository_id FROM outdated_replicas")}
    for (storage,) in await db.execute_fetchall("SELECT name FROM storages"):
        if storage not in healthy:
            rows = await db.execute_fetchall(
                "SELECT repository_id FROM replicas WHERE storage = ?", (storage,)
            )
            ids.update(r for (r,) in rows)
    unavailable: list[Repository] = []
    partial: list[Repository] = []
    for repo in await repositories_by_ids(db, sorted(ids)):
        current = set(repo.up_to_date())
        if not current & healthy:
            unavailable.append(repo)
        elif include_partial and any(
            r.storage not in current or r.storage not in healthy for r in repo.replicas
        ):
            partial.append(repo)
    return unavailable, partial


async def repositories_by_ids(db: aiosqlite.Connection, repository_ids: list[str]) -> list[Repository]:
    """The repositories with these ids that exist, by relative path (one parameter)."""
    if not repository_ids:
        return []
    return await _repositories(
        db, "WHERE repository_id IN (SELECT value FROM json_each(?))", (json.dumps(repository_ids),)
    )


async def _open_intents(
    db: aiosqlite.Connection, where: str = "", params: tuple[Any, ...] = ()
) -> list[WriteIntent]:
    """Write intents not yet finished (and matching `where`), oldest deadline first."""
    rows = await db.execute_fetchall(
        "SELECT intent_id, repository_id, proxy, storages, deadline FROM write_intents"
        f" WHERE result IS NULL {where} ORDER BY deadline, intent_id",
        params,
    )
    return [WriteIntent(i, r, p, tuple(json.loads(s)), d) for i, r, p, s, d in rows]


async def expired_intents(db: aiosqlite.Connection, now: float) -> list[WriteIntent]:
    return await _open_intents(db, "AND deadline < ?", (now,))


async def open_intents(db: aiosqlite.Connection, repository_id: str) -> list[WriteIntent]:
    """The repository's write intents not yet finished (expired or not), oldest first."""
    return await _open_intents(db, "AND repository_id = ?", (repository_id,))


async def queue_depth(db: aiosqlite.Connection) -> dict[tuple[str, str], int]:
    rows = await db.execute_fetchall(
        "SELECT state, target, COUNT(*) FROM replication_jobs GROUP BY state, target"
    )
    return {(s, t): n for s, t, n in rows}


async def list_jobs(db: aiosqlite.Connection, states: list[JobState] | None, limit: int) -> list[Job]:
    sql = f"SELECT {JOB_COLUMNS} FROM replication_jobs"
    params: list[Any] = []
    if states:
        sql += f" WHERE state IN ({','.join('?' * len(states))})"
        params += [str(s) for s in states]
    sql += " ORDER BY id LIMIT ?"
    params.append(limit)
    return [job_from_dict(job_dict(tuple(r))) for r in await db.execute_fetchall(sql, params)]


async def needs_verify(db: aiosqlite.Connection, limit: int = 1000) -> list[tuple[str, str]]:
    """Up to `limit` (repository_id, storage) pairs flagged by a failed write: compare
    checksums (a partial index holds exactly the flagged rows)."""
    rows = await db.execute_fetchall(
        "SELECT repository_id, storage FROM replicas WHERE needs_verify = 1 ORDER BY 1, 2 LIMIT ?", (limit,)
    )
    return [(r, s) for r, s in rows]


async def all_open_intents(db: aiosqlite.Connection) -> list[WriteIntent]:
    """Every write intent not yet finished (expired or not), oldest deadline first."""
    return await _open_intents(db)


# --- reconciler, verifier, scale (indexed: no scan of every repository) -------------


async def outdated_without_job(
    db: aiosqlite.Connection, targets: list[str], per_target: int
) -> list[tuple[str, str]]:
    """Up to `per_target` (repository_id, storage) per storage in `targets`: replicas
    below their repository's generation (the `outdated_replicas` index) with no update
    or create job ready, failed or in progress for them (a dead job does not count)."""
    out: list[tuple[str, str]] = []
    for storage in targets:
        rows = await db.execute_fetchall(
            "SELECT o.repository_id FROM outdated_replicas o WHERE o.storage = ? AND NOT EXISTS ("
            " SELECT 1 FROM replication_jobs j WHERE j.repository_id = o.repository_id"
            " AND j.target = o.storage AND j.state IN (?, ?, ?) AND j.change IN (?, ?))"
            " ORDER BY o.repository_id LIMIT ?",
            (
                storage,
                JobState.READY,
                JobState.FAILED,
                JobState.IN_PROGRESS,
                ChangeType.UPDATE,
                ChangeType.CREATE,
                per_target,
            ),
        )
        out += [(r[0], storage) for r in rows]
    return out


async def recently_dead(db: aiosqlite.Connection, since: float) -> set[tuple[str, str]]:
    """(repository_id, target) of update/create jobs that died at or after `since`."""
    rows = await db.execute_fetchall(
        "SELECT repository_id, target FROM replication_jobs WHERE state = ? AND updated_at >= ?"
        " AND change IN (?, ?)",
        (JobState.DEAD, since, ChangeType.UPDATE, ChangeType.CREATE),
    )
    return {(r, t) for r, t in rows}


async def repositories_after(db: aiosqlite.Connection, after: str, limit: int) -> list[Repository]:
    """Up to `limit` repositories with an id greater than `after`, by id (a cursor that
    walks every repository a page at a time)."""
    return await _repositories(db, "WHERE repository_id > ? ORDER BY repository_id LIMIT ?", (after, limit))


async def repository_count(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("SELECT COALESCE(SUM(primaries), 0) FROM storage_load"))
    return int(rows[0][0])


async def storage_counts(db: aiosqlite.Connection) -> tuple[dict[str, int], dict[str, int]]:
    """(assigned replicas per storage, primaries per storage), storages with none left
    out: the `storage_load` counters (one row per storage)."""
    rows = list(await db.execute_fetchall("SELECT storage, replicas, primaries FROM storage_load"))
    return {s: r for s, r, _ in rows if r > 0}, {s: p for s, _, p in rows if p > 0}


async def failover_candidates(db: aiosqlite.Connection, healthy: set[str], limit: int) -> list[Repository]:
    """Up to `limit` repositories whose primary is not in `healthy` or is outdated and
    that have a healthy up-to-date replica to move it to (the `repositories_by_primary`,
    `replicas_by_storage` and `outdated_replicas` indexes; the cost follows the answer).
    Unavailable repositories are left out, so they never crowd out movable ones."""
    names = json.dumps(sorted(healthy))
    movable = (
        "EXISTS (SELECT 1 FROM replicas c WHERE c.repository_id = r.repository_id"
        " AND c.storage IN (SELECT value FROM json_each(?)) AND NOT EXISTS (SELECT 1 FROM"
        " outdated_replicas x WHERE x.repository_id = c.repository_id AND x.storage = c.storage))"
    )
    known = [s for (s,) in await db.execute_fetchall("SELECT name FROM storages ORDER BY name")]
    ids: dict[str, None] = {}
    for storage in known:
        if storage in healthy or len(ids) >= limit:
            continue
        rows = await db.execute_fetchall(
            f'SELECT r.repository_id FROM repositories r WHERE r."primary" = ? AND {movable}'
            " ORDER BY r.repository_id LIMIT ?",
            (storage, names, limit - len(ids)),
        )
        ids.update((r[0], None) for r in rows)
    if len(ids) < limit:
        rows = await db.execute_fetchall(
            # CROSS JOIN: SQLite keeps this order, so the (small) index drives the join.
            "SELECT r.repository_id FROM outdated_replicas o CROSS JOIN repositories r"
            f' ON r.repository_id = o.repository_id AND r."primary" = o.storage WHERE {movable}'
            " ORDER BY o.repository_id LIMIT ?",
            (names, limit - len(ids)),
        )
        ids.update((r[0], None) for r in rows)
    return await repositories_by_ids(db, list(ids))


async def job_counts(db: aiosqlite.Connection) -> dict[str, int]:
    """Jobs per state, every job counted, states with none left out (the
    `job_state_counts` counters)."""
    rows = await db.execute_fetchall("SELECT state, jobs FROM job_state_counts WHERE jobs > 0")
    return {s: n for s, n in rows}


async def runnable_job_exists(
    db: aiosqlite.Connection, now: float, healthy: set[str], max_per_target: int | None = None
) -> bool:
    """Whether `lease_jobs` with this `healthy` set (and `max_per_target`) could lease a
    job at `now`: one leasable job (ready, failed and due, in progress with an expired
    lease) whose storages are all healthy and whose target is not saturated. Indexed
    queries; no per-job work in Python."""
    targets = set(healthy)
    if max_per_target:
        running = await db.execute_fetchall(
            "SELECT target, COUNT(*) FROM replication_jobs WHERE state = ? AND lease_expires_at > ?"
            " GROUP BY target",
            (JobState.IN_PROGRESS, now),
        )
        targets -= {t for t, n in running if n >= max_per_target}
    if not targets:
        return False
    sources = json.dumps(sorted(healthy))
    rows = await db.execute_fetchall(
        "SELECT 1 FROM replication_jobs WHERE (state = ? OR (state = ? AND retry_at <= ?)"
        " OR (state = ? AND lease_expires_at <= ?)) AND target IN (SELECT value FROM json_each(?))"
        " AND (change NOT IN (?, ?) OR source IN (SELECT value FROM json_each(?))) LIMIT 1",
        (
            JobState.READY,
            JobState.FAILED,
            now,
            JobState.IN_PROGRESS,
            now,
            json.dumps(sorted(targets)),
            ChangeType.CREATE,
            ChangeType.UPDATE,
            sources,
        ),
    )
    return bool(rows)


async def repository_paths(db: aiosqlite.Connection, repository_ids: list[str]) -> dict[str, str]:
    """repository_id -> relative_path for the given ids that exist (one parameter)."""
    rows = await db.execute_fetchall(
        "SELECT repository_id, relative_path FROM repositories"
        " WHERE repository_id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(set(repository_ids))),),
    )
    return {r: p for r, p in rows}


async def replicas_on(db: aiosqlite.Connection, storage: str, limit: int) -> list[Repository]:
    """Up to `limit` repositories with a replica assigned on `storage` (by id)."""
    return await _repositories(
        db,
        "WHERE repository_id IN (SELECT repository_id FROM replicas WHERE storage = ?"
        " ORDER BY repository_id LIMIT ?) ORDER BY repository_id",
        (storage, limit),
    )


async def dead_deletions(db: aiosqlite.Connection, healthy: set[str], before: float, limit: int) -> list[int]:
    """Ids of `delete_replica` jobs that died before `before` on a storage in `healthy`."""
    rows = await db.execute_fetchall(
        "SELECT id, target FROM replication_jobs WHERE state = ? AND updated_at < ? AND change = ?"
        " ORDER BY updated_at",
        (JobState.DEAD, before, ChangeType.DELETE_REPLICA),
    )
    return [int(i) for i, t in rows if t in healthy][:limit]


async def oldest_jobs(db: aiosqlite.Connection) -> dict[str, float]:
    """State -> creation time of its oldest job (metrics: replication lag)."""
    rows = await db.execute_fetchall("SELECT state, MIN(created_at) FROM replication_jobs GROUP BY state")
    return {state: float(created) for state, created in rows}


async def open_intent_summary(db: aiosqlite.Connection, now: float) -> tuple[int, int, float | None]:
    """(open intents, those past their deadline at `now`, the earliest open deadline)."""
    rows = await db.execute_fetchall(
        "SELECT COUNT(*), COALESCE(SUM(deadline < ?), 0), MIN(deadline) FROM write_intents"
        " WHERE result IS NULL",
        (now,),
    )
    count, expired, first = next(iter(rows), (0, 0, None))
    return int(count), int(expired), None if first is None else float(first)
