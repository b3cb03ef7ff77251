"""`RaftMetadataStore`: the `api.MetadataStore` over Raft (pysyncobj) and SQLite.

    store = RaftMetadataStore(RaftConfig(self_addr=..., peers=[...], password=..., data_dir=...))
    await store.start()
    await store.create_repository(...)
    await store.barrier(); repo = await store.get_repository("group/project.git")
    await store.stop()

Commands never block the event loop: pysyncobj's callback (on its tick thread) resolves
an asyncio future through `loop.call_soon_threadsafe`. Each command carries a random
command id; when an attempt fails (no leader, leader changed, no answer within
`retry_interval`) the *same* command is sent again, and the state machine applies it
once. After `command_timeout` the store gives up with `UnavailableError("no quorum:
...")`: the outcome is then unknown (the command may still apply).

Concurrent commands are packed into shared log entries (`batcher`: group commit).

Queries read this member's SQLite database through an aiosqlite connection (WAL: they
see every applied command, never a half-applied one). They are not linearizable by
themselves: `barrier()` commits a no-op and waits until it is applied here, so state
read after it includes every command acknowledged to anyone before it began.
Concurrent barriers share one no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import aiosqlite
from pysyncobj import FAIL_REASON

from cluster.metadata import queries, statemachine
from cluster.metadata.api import (
    HealthVote,
    Job,
    JobState,
    RaftStatus,
    RepairItem,
    Repository,
    Storage,
    WriteIntent,
    WriteResult,
)
from cluster.metadata.batcher import CommandBatcher
from cluster.metadata.config import RaftConfig
from cluster.metadata.raft import FAIL_REASONS, RaftDatabase
from common.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    GitraftError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from common.logs import correlation_id

log = logging.getLogger(__name__)

_ERRORS: dict[str, type[GitraftError]] = {
    "not_found": NotFoundError,
    "exists": AlreadyExistsError,
    "precondition": FailedPreconditionError,
    "invalid": InvalidArgumentError,
}
_ROLES = {0: "follower", 1: "candidate", 2: "leader"}


class RaftMetadataStore:
    """Raft-replicated metadata (implements `api.MetadataStore`)."""

    def __init__(self, config: RaftConfig) -> None:
        self.config = config
        self._raft: RaftDatabase | None = None
        self._db: aiosqlite.Connection | None = None
        self._barrier_waiters: list[asyncio.Future[None]] = []
        self._barrier_running = False
        self._barrier_task: asyncio.Task[None] | None = None
        self._batcher = CommandBatcher(self._commit, config.command_timeout)
        # Called with each committed log entry's latency in seconds (metrics).
        self.on_commit: Callable[[float], None] | None = None

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start the Raft member (binds its port), wait for the local state to load;
        UnavailableError when the Raft port cannot be bound within `bind_timeout`.

        Must run on the thread that stays alive while the store is used (pysyncobj's
        tick thread stops when the thread that created it exits)."""
        self._raft = RaftDatabase(self.config)
        try:
            await asyncio.to_thread(self._raft.wait_started, 30.0)
        except UnavailableError:
            raft, self._raft = self._raft, None
            await asyncio.to_thread(raft.close)
            raise
        self._db = await aiosqlite.connect(str(self.config.db_path))
        await self._db.execute("PRAGMA query_only=ON")

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
        if self._raft is not None:
            raft, self._raft = self._raft, None
            await asyncio.to_thread(raft.close)

    async def wait_ready(self, within: float) -> None:
        """Wait until a barrier commits (a leader exists and this member caught up)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                await self.barrier()
                return
            except UnavailableError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise

    @property
    def raft(self) -> RaftDatabase:
        if self._raft is None:
            raise UnavailableError("metadata store is not started")
        return self._raft

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise UnavailableError("metadata store is not started")
        return self._db

    def status(self) -> RaftStatus:
        s = self.raft.status()
        peers = {
            k.removeprefix("partner_node_status_server_"): v == 2
            for k, v in s.items()
            if k.startswith("partner_node_status_server_")
        }
        return RaftStatus(
            self_address=self.config.self_addr,
            leader_address=str(s.get("leader") or ""),
            role=_ROLES.get(int(s.get("state", 0)), "follower"),
            term=int(s.get("raft_term", 0)),
            commit_index=int(s.get("commit_idx", 0)),
            applied_index=int(s.get("last_applied", 0)),
            peers=peers,
        )

    def is_leader(self) -> bool:
        return self.raft.is_leader()

    # --- submission ------------------------------------------------------------

    async def submit(
        self, op: str, args: dict[str, Any], within: float | None = None, command_id: str | None = None
    ) -> Any:
        """Commit one command and return its result once applied here; raises the
        matching GitraftError for a refusal, UnavailableError when not committed `within`
        seconds (default `command_timeout`).

        `command_id` (default: a fresh random one) makes the command idempotent: a
        command id seen before returns the first result and changes nothing."""
        command: dict[str, Any] = {"op": op, "args": args}
        if op != "noop":
            command["cid"] = command_id or uuid.uuid4().hex
        if op == "noop" or within is not None:
            result = await self._commit(statemachine.encode(command), op, within)
        else:  # may share a log entry with concurrent commands
            result = await self._batcher.submit(command)
        if isinstance(result, dict) and "error" in result:
            raise _ERRORS.get(result["error"], GitraftError)(str(result.get("message", "")))
        return result["ok"] if isinstance(result, dict) else result

    async def _commit(self, payload: bytes, what: str, within: float | None) -> Any:
        loop = asyncio.get_running_loop()
        timeout = self.config.command_timeout if within is None else within
        start = loop.time()
        deadline = start + timeout
        last = "no attempt"
        while (remaining := deadline - loop.time()) > 0:
            future: asyncio.Future[tuple[Any, int]] = loop.create_future()

            def done(result: Any, reason: int, future: asyncio.Future[tuple[Any, int]] = future) -> None:
                with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                    loop.call_soon_threadsafe(_resolve, future, (result, reason))

            self.raft.submit(payload, done)
            try:
                result, reason = await asyncio.wait_for(future, min(remaining, self.config.retry_interval))
            except TimeoutError:
                last = "no answer"
                log.debug("attempt of %r unanswered", what)
                continue
            if reason == FAIL_REASON.SUCCESS:
                if self.on_commit is not None:
                    self.on_commit(loop.time() - start)
                return result
            last = FAIL_REASONS.get(reason, str(reason))
            log.debug("attempt of %r failed: %s", what, last)
            await asyncio.sleep(min(0.02, max(0.0, deadline - loop.time())))
        raise UnavailableError(
            f"no quorum: {what!r} not committed within {timeout:g}s (outcome unknown; last: {last})"
        )

    async def barrier(self) -> None:
        """Wait until local state includes every command committed before this call."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barrier_waiters.append(future)
        if not self._barrier_running:
            self._barrier_running = True
            self._barrier_task = asyncio.get_running_loop().create_task(self._run_barriers())
        await future

    async def _run_barriers(self) -> None:
        try:
            while self._barrier_waiters:
                waiters, self._barrier_waiters = self._barrier_waiters, []
                try:
                    await self.submit("noop", {})
                except Exception as exc:
                    for w in waiters:
                        if not w.done():
                            w.set_exception(exc)
                    continue
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
        finally:
            self._barrier_running = False

    # --- commands --------------------------------------------------------------

    async def register_storage(self, name: str, address: str) -> None:
        await self.submit("register_storage", {"name": name, "address": address})

    async def create_repository(
        self,
        repository_id: str,
        relative_path: str,
        replica_path: str,
        storages: list[str],
        primary: str,
        replication_factor: int,
        now: float,
    ) -> Repository:
        args = {
            "repository_id": repository_id,
            "relative_path": relative_path,
            "replica_path": replica_path,
            "storages": list(storages),
            "primary": primary,
            "replication_factor": replication_factor,
            "now": now,
        }
        return queries.repository_from_dict(await self.submit("create_repository", args))

    async def remove_repository(self, repository_id: str, now: float) -> None:
        args = {"repository_id": repository_id, "now": now, "end_running_jobs": True}
        await self.submit("remove_repository", args)

    async def rename_repository(self, repository_id: str, new_relative_path: str, now: float) -> None:
        args = {"repository_id": repository_id, "new_relative_path": new_relative_path, "now": now}
        await self.submit("rename_repository", args)

    async def begin_write(
        self, intent_id: str, repository_id: str, storages: list[str], proxy: str, deadline: float
    ) -> WriteIntent:
        args = {
            "intent_id": intent_id,
            "repository_id": repository_id,
            "storages": list(storages),
            "proxy": proxy,
            "deadline": deadline,
            # A write executed by one storage (every mutator today) is fenced.
            "fence": len(storages) == 1,
        }
        return queries.intent_from_dict(await self.submit("begin_write", args))

    async def renew_intent(self, intent_id: str, deadline: float, now: float) -> bool:
        args = {"intent_id": intent_id, "deadline": deadline, "now": now}
        return bool(await self.submit("renew_intent", args))

    async def finish_write(
        self, intent_id: str, succeeded: list[str], failed: list[str], now: float, *, repair: bool = False
    ) -> WriteResult:
        args: dict[str, Any] = {
            "intent_id": intent_id,
            "succeeded": list(succeeded),
            "failed": list(failed),
            "now": now,
        }
        if repair:
            args["repair"] = True
        if cid := correlation_id.get():  # travels into the jobs it schedules
            args["correlation_id"] = cid
        r = await self.submit("finish_write", args)
        return WriteResult(
            generation=r["generation"], scheduled=tuple(r["scheduled"]), fenced=str(r.get("fenced") or "")
        )

    async def set_generation(self, repository_id: str, storage: str, generation: int, now: float) -> int:
        args = {"repository_id": repository_id, "storage": storage, "generation": generation, "now": now}
        return int(await self.submit("set_generation", args))

    async def lease_jobs(
        self,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        healthy: set[str] | None = None,
        max_per_target: int | None = None,
    ) -> list[Job]:
        args: dict[str, Any] = {
            "owner": owner,
            "now": now,
            "lease_seconds": lease_seconds,
            "limit": limit,
            "max_attempts": self.config.job_max_attempts,
        }
        if healthy is not None:  # sorted: the command's bytes do not depend on set order
            args["healthy"] = sorted(healthy)
        if max_per_target:
            args["max_per_target"] = max_per_target
        return [queries.job_from_dict(j) for j in await self.submit("lease_jobs", args)]

    async def renew_leases(self, owner: str, job_ids: list[int], now: float, lease_seconds: float) -> None:
        """Extend the leases; FailedPreconditionError naming the jobs `owner` lost (the
        others are renewed)."""
        args = {"owner": owner, "job_ids": list(job_ids), "now": now, "lease_seconds": lease_seconds}
        lost = await self.submit("renew_leases", args)
        if lost:
            raise FailedPreconditionError(f"leases lost by {owner!r}: {lost!r}")

    async def complete_job(self, job_id: int, owner: str, now: float) -> bool:
        args = {"job_id": job_id, "owner": owner, "now": now, "removed_is_noop": True}
        result = await self.submit("complete_job", args)
        return not (isinstance(result, dict) and result.get("repository_removed"))

    async def fail_job(self, job_id: int, owner: str, error: str, now: float, retry_at: float) -> Job:
        args = {
            "job_id": job_id,
            "owner": owner,
            "error": error,
            "now": now,
            "retry_at": retry_at,
            "max_attempts": self.config.job_max_attempts,
        }
        return queries.job_from_dict(await self.submit("fail_job", args))

    async def set_replication_factor(
        self, repository_id: str, assign: list[str], unassign: list[str], now: float
    ) -> Repository:
        args = {
            "repository_id": repository_id,
            "assign": list(assign),
            "unassign": list(unassign),
            "now": now,
        }
        return queries.repository_from_dict(await self.submit("set_replication_factor", args))

    async def set_primary(self, repository_id: str, storage: str, now: float) -> Repository:
        args = {"repository_id": repository_id, "storage": storage, "now": now, "require_up_to_date": True}
        return queries.repository_from_dict(await self.submit("set_primary", args))

    async def accept_dataloss(self, repository_id: str, authoritative_storage: str, now: float) -> Repository:
        args = {"repository_id": repository_id, "storage": authoritative_storage, "now": now, "fence": True}
        return queries.repository_from_dict(await self.submit("accept_dataloss", args))

    async def record_health(self, proxy: str, storage: str, healthy: bool, now: float) -> None:
        args = {"proxy": proxy, "storage": storage, "healthy": healthy, "now": now}
        await self.submit("record_health", args)

    # --- queries ---------------------------------------------------------------

    async def storages(self) -> list[Storage]:
        return await queries.storages(self.db)

    async def get_repository(self, relative_path: str) -> Repository | None:
        return await queries.get_repository(self.db, relative_path)

    async def get_repository_by_id(self, repository_id: str) -> Repository | None:
        return await queries.get_repository_by_id(self.db, repository_id)

    async def list_repositories(self) -> list[Repository]:
        return await queries.list_repositories(self.db)

    async def healthy_storages(self, now: float) -> set[str]:
        return await queries.healthy_storages(self.db, now, self.config.health_window)

    async def health_votes(self) -> dict[str, dict[str, HealthVote]]:
        return await queries.health_votes(self.db)

    async def up_to_date_replicas(self, repository_id: str) -> list[str]:
        return await queries.up_to_date_replicas(self.db, repository_id)

    async def valid_primaries(self, repository_id: str, now: float) -> list[str]:
        return await queries.valid_primaries(self.db, repository_id, now, self.config.health_window)

    async def dataloss(self, now: float, include_partial: bool) -> tuple[list[Repository], list[Repository]]:
        return await queries.dataloss(self.db, now, self.config.health_window, include_partial)

    async def expired_intents(self, now: float) -> list[WriteIntent]:
        return await queries.expired_intents(self.db, now)

    async def open_intents(self, repository_id: str) -> list[WriteIntent]:
        return await queries.open_intents(self.db, repository_id)

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        return await queries.queue_depth(self.db)

    async def list_jobs(self, states: list[JobState] | None, limit: int) -> list[Job]:
        return await queries.list_jobs(self.db, states, limit)

    # --- operator commands and queries (gitraft CLI) -------------------------------

    async def track_repository(
        self,
        repository_id: str,
        relative_path: str,
        replica_path: str,
        storages: list[str],
        primary: str,
        replication_factor: int,
        now: float,
    ) -> Repository:
        args = {
            "repository_id": repository_id,
            "relative_path": relative_path,
            "replica_path": replica_path,
            "storages": list(storages),
            "primary": primary,
            "replication_factor": replication_factor,
            "now": now,
        }
        return queries.repository_from_dict(await self.submit("track_repository", args))

    async def all_open_intents(self) -> list[WriteIntent]:
        return await queries.all_open_intents(self.db)

    # --- reconciler and verifier (cluster.metadata.repair) -------------------------

    async def schedule_repairs(self, items: list[RepairItem], now: float) -> list[str]:
        args = {"now": now, "items": [dict(i) for i in items]}
        return [str(r) for r in await self.submit("schedule_repairs", args)]

    async def retry_jobs(self, job_ids: list[int], all_dead: bool, now: float) -> list[int]:
        args = {"job_ids": [int(i) for i in job_ids], "all_dead": all_dead, "now": now}
        return [int(i) for i in await self.submit("retry_jobs", args)]

    async def clear_needs_verify(self, replicas: list[tuple[str, str]], now: float) -> int:
        if not replicas:
            return 0
        return int(
            await self.submit("clear_needs_verify", {"replicas": [list(r) for r in replicas], "now": now})
        )

    async def needs_verify(self, limit: int = 1000) -> list[tuple[str, str]]:
        return await queries.needs_verify(self.db, limit)

    async def prune_jobs(self, completed_before: float, limit: int) -> dict[str, int]:
        args = {"completed_before": completed_before, "limit": limit}
        return dict(await self.submit("prune_jobs", args))

    async def outdated_without_job(self, targets: list[str], per_target: int) -> list[tuple[str, str]]:
        return await queries.outdated_without_job(self.db, targets, per_target)

    async def recently_dead(self, since: float) -> set[tuple[str, str]]:
        return await queries.recently_dead(self.db, since)

    async def repositories_after(self, after: str, limit: int) -> list[Repository]:
        return await queries.repositories_after(self.db, after, limit)

    async def repository_count(self) -> int:
        return await queries.repository_count(self.db)

    async def dead_deletions(self, healthy: set[str], before: float, limit: int) -> list[int]:
        return await queries.dead_deletions(self.db, healthy, before, limit)

    async def replicas_on(self, storage: str, limit: int) -> list[Repository]:
        return await queries.replicas_on(self.db, storage, limit)

    async def storage_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        return await queries.storage_counts(self.db)

    async def failover_candidates(self, healthy: set[str], limit: int) -> list[Repository]:
        return await queries.failover_candidates(self.db, healthy, limit)

    async def job_counts(self) -> dict[str, int]:
        return await queries.job_counts(self.db)

    async def runnable_job_exists(
        self, now: float, healthy: set[str], max_per_target: int | None = None
    ) -> bool:
        return await queries.runnable_job_exists(self.db, now, healthy, max_per_target)

    async def repository_paths(self, repository_ids: list[str]) -> dict[str, str]:
        return await queries.repository_paths(self.db, repository_ids)


def _resolve(future: asyncio.Future[tuple[Any, int]], value: tuple[Any, int]) -> None:
    if not future.done():
        future.set_result(value)
