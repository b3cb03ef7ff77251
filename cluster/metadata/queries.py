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

_REPO_COLUMNS = 'repository_id, relative_path, replica_path, "primary", replication_factor, created_at'


def repository_from_dict(d: dict[str, Any]) -> Repository:
    return Repository(
        repository_id=d["repository_id"],
        relative_path=d["relative_path"],
        replica_path=d["replica_path"],
        primary=d["primary"],
        replication_factor=d["replication_factor"],
        created_at=d["created_at"],
        replicas=tuple(Replica(r["storage"], r["generation"]) for r in d["replicas"]),
    )


def job_from_dict(d: dict[str, Any]) -> Job:
    return Job(
        id=d["id"],
        repository_id=d["repository_id"],
        change=ChangeType(d["change"]),
        source=d["source"],
        target=d["target"],
        source_generation=d["source_generation"],
        state=JobState(d["state"]),
        attempts=d["attempts"],
        lease_owner=d["lease_owner"],
        lease_expires_at=d["lease_expires_at"],
        retry_at=d["retry_at"],
        last_error=d["last_error"],
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        params=dict(d["params"]),
    )


def intent_from_dict(d: dict[str, Any]) -> WriteIntent:
    return WriteIntent(d["intent_id"], d["repository_id"], d["proxy"], tuple(d["storages"]), d["deadline"])


async def _repositories(
    db: aiosqlite.Connection, where: str = "", params: tuple[Any, ...] = ()
) -> list[Repository]:
    rows = await db.execute_fetchall(
        f"SELECT {_REPO_COLUMNS} FROM repositories {where} ORDER BY relative_path", params
    )
    if not rows:
        return []
    replicas: dict[str, list[Replica]] = defaultdict(list)
    ids = [r[0] for r in rows]
    marks = ",".join("?" * len(ids))
    for rid, storage, gen in await db.execute_fetchall(
        f"SELECT repository_id, storage, generation FROM replicas WHERE repository_id IN ({marks})"
        " ORDER BY storage",
        ids,
    ):
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
    """(unavailable, partially available) repositories; see `MetadataStore.dataloss`."""
    healthy = await healthy_storages(db, now, window)
    unavailable: list[Repository] = []
    partial: list[Repository] = []
    for repo in await _repositories(db):
        current = set(repo.up_to_date())
        if not current & healthy:
            unavailable.append(repo)
        elif include_partial and any(
            r.storage not in current or r.storage not in healthy for r in repo.replicas
        ):
            partial.append(repo)
    return unavailable, partial


async def expired_intents(db: aiosqlite.Connection, now: float) -> list[WriteIntent]:
    rows = await db.execute_fetchall(
        "SELECT intent_id, repository_id, proxy, storages, deadline FROM write_intents"
        " WHERE result IS NULL AND deadline < ? ORDER BY deadline, intent_id",
        (now,),
    )
    return [WriteIntent(i, r, p, tuple(json.loads(s)), d) for i, r, p, s, d in rows]


async def open_intents(db: aiosqlite.Connection, repository_id: str) -> list[WriteIntent]:
    """The repository's write intents not yet finished (expired or not), oldest first."""
    rows = await db.execute_fetchall(
        "SELECT intent_id, repository_id, proxy, storages, deadline FROM write_intents"
        " WHERE result IS NULL AND repository_id = ? ORDER BY deadline, intent_id",
        (repository_id,),
    )
    return [WriteIntent(i, r, p, tuple(json.loads(s)), d) for i, r, p, s, d in rows]


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


async def needs_verify(db: aiosqlite.Connection) -> list[tuple[str, str]]:
    """(repository_id, storage) pairs flagged by a failed write: compare checksums."""
    rows = await db.execute_fetchall(
        "SELECT repository_id, storage FROM replicas WHERE needs_verify = 1 ORDER BY 1, 2"
    )
    return [(r, s) for r, s in rows]


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
