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

Each command method is built from its declaration (`cluster.metadata.commands`) and
typed and documented by its `api.MetadataStore` method: `lease_jobs =
command(MetadataStore.lease_jobs)`.

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
import inspect
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import aiosqlite
from pysyncobj import FAIL_REASON

from cluster.metadata import commands, queries, statemachine
from cluster.metadata.api import (
    HealthVote,
    Job,
    JobState,
    MetadataStore,
    RaftStatus,
    Repository,
    Storage,
    WriteIntent,
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


P = ParamSpec("P")
R = TypeVar("R")


def command(
    declared: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[RaftMetadataStore, P], Coroutine[Any, Any, R]]:
    """The store method of a declared command, typed and documented by `declared` (the
    `api.MetadataStore` method of the same name as the command's op)."""
    op = declared.__name__
    if op not in commands.REGISTRY:  # the handler modules register on import (statemachine)
        raise LookupError(f"no command {op!r} is declared (cluster.metadata.commands)")
    parameters = list(inspect.signature(declared).parameters.values())[1:]  # without self
    names = [p.name for p in parameters]
    positional = [p.name for p in parameters if p.kind == p.POSITIONAL_OR_KEYWORD]
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}

    async def method(self: RaftMetadataStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        # inspect.Signature.bind, without its cost on every command
        call = dict(defaults)
        if len(args) > len(positional) or not kwargs.keys() <= set(names):
            raise TypeError(f"{op}() got unexpected arguments: {args!r}, {sorted(kwargs)!r}")
        call.update(zip(positional, args, strict=False))
        call.update(kwargs)
        if len(call) != len(names):
            raise TypeError(f"{op}() missing arguments: {[n for n in names if n not in call]!r}")
        return cast(R, await self.run_command(op, call))

    method.__name__, method.__qualname__, method.__doc__ = op, f"RaftMetadataStore.{op}", declared.__doc__
    return method


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

    # --- commands (declared in `cluster.metadata.commands`) -------------------------

    async def run_command(self, op: str, call: dict[str, Any]) -> Any:
        """Submit the declared command `op` for a store method's arguments (by name) and
        return its converted result (see `commands.Command`)."""
        declared = commands.REGISTRY[op]
        context = {
            "max_attempts": self.config.job_max_attempts,
            "correlation_id": correlation_id.get() or None,
        }
        args = declared.args(call, context)
        if declared.skip is not None and (answer := declared.skip(args)) is not None:
            return answer
        return declared.result(await self.submit(op, args))

    register_storage = command(MetadataStore.register_storage)
    create_repository = command(MetadataStore.create_repository)
    remove_repository = command(MetadataStore.remove_repository)
    rename_repository = command(MetadataStore.rename_repository)
    begin_write = command(MetadataStore.begin_write)
    renew_intent = command(MetadataStore.renew_intent)
    finish_write = command(MetadataStore.finish_write)
    set_generation = command(MetadataStore.set_generation)
    lease_jobs = command(MetadataStore.lease_jobs)
    renew_leases = command(MetadataStore.renew_leases)
    complete_job = command(MetadataStore.complete_job)
    fail_job = command(MetadataStore.fail_job)
    set_replication_factor = command(MetadataStore.set_replication_factor)
    set_primary = command(MetadataStore.set_primary)
    accept_dataloss = command(MetadataStore.accept_dataloss)
    record_health = command(MetadataStore.record_health)
    track_repository = command(MetadataStore.track_repository)
    schedule_repairs = command(MetadataStore.schedule_repairs)
    retry_jobs = command(MetadataStore.retry_jobs)
    clear_needs_verify = command(MetadataStore.clear_needs_verify)
    prune_jobs = command(MetadataStore.prune_jobs)

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

    async def all_open_intents(self) -> list[WriteIntent]:
        return await queries.all_open_intents(self.db)

    # --- reconciler and verifier (cluster.metadata.repair) -------------------------

    async def needs_verify(self, limit: int = 1000) -> list[tuple[str, str]]:
        return await queries.needs_verify(self.db, limit)

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
