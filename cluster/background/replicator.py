"""Replication workers: lease jobs through Raft, have the target node copy from the source.

`Replicator.run()` loops until stopped. Each round it asks the local queue (one indexed
SQLite query, no Raft command, whatever the queue's length) whether any job is leasable
(ready, failed and due, or in progress with an expired lease) with every node it needs
healthy for the cluster, and only then leases (a Raft command) as many as it has free
workers, at most `per_target` running per target storage cluster-wide. The lease
passes the cluster's healthy storages, so the store skips jobs for a node that is down
(they keep their attempts) and leases the others oldest first: one dead node neither
burns through the attempts of every job waiting for it nor starves the jobs of the live
ones, however many wait for it. Up to `workers` jobs run at once; each:

- `create` / `update`: skipped when the target is already at the job's generation or
  newer (`obsolete`); otherwise the lease is confirmed - by the `lease_jobs` command
  itself when it was taken less than CONFIRM_AFTER of the lease ago (the usual case: the
  job starts as soon as it is leased), else by a `renew_leases` command; once the
  confirming command has returned, this proxy's state includes every command committed
  before it, so it serves as the barrier too (a copy costs the lease and the
  completion, not four commands) - and the job is skipped
  when the repository was removed or the target unassigned meanwhile (so a removed
  replica is not re-created on disk by a job that learns of the removal in time - one
  committed while ReplicateRepository runs is not seen; the repository's own removal
  on disk and its `delete_replica` jobs handle that); otherwise ReplicateRepository
  on the TARGET node,
  repository = the target's replica, source = the source's replica +
  NodeAddress(name, address, node_token); then `complete_job`, which raises the target's
  generation to the job's source_generation (never lower; nothing for a removed
  repository). The completion waits for the next round (woken at once) and leaves with
  its lease and any other completion waiting, in one log entry: during a drain a job
  costs about one entry, not two. A stopping replicator sends the completions waiting
  before it cancels the jobs still running;
- `delete_replica`: RemoveRepository on the target (NOT_FOUND counts as done), by the
  job's `replica_path` when the repository itself is gone;
- `optimize`: OptimizeRepository on the target; `rename`: metadata only, nothing to do;
- any other job whose repository no longer exists completes without work.

Errors go to `fail_job` with exponential backoff (retry_at); the store counts attempts and
makes a job dead after its maximum. The leases of every job running here are renewed
together, in one command every third of the lease; a job whose lease is lost is
cancelled, and the lease is confirmed right before the ReplicateRepository call (see
above), so a worker paused past its lease does not copy over a newer owner's work (one
paused between that confirmation and the call still can: the node does not know leases).
`wake()` starts a round at once (called when this proxy scheduled jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from cluster.background.periodic import run_periodically
from cluster.metadata.api import ChangeType, Job, JobState, MetadataStore, Repository
from cluster.observability.metrics import ProxyMetrics
from cluster.proxy.nodes import NodePool
from common.errors import FailedPreconditionError, GitraftError
from common.logs import bind_fields, correlation_id
from gitraft.v1 import repository_pb2, shared_pb2

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2
REPLICATE_TIMEOUT = 600.0
# A lease taken less than this fraction of its time ago confirms itself (see `_confirmed`).
CONFIRM_AFTER = 1 / 3
# How long a stopping replicator waits to record the jobs it finished.
STOP_FLUSH_SECONDS = 2.0


def backoff_seconds(attempts: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Delay before retry number `attempts` (1-based): base * 2^(attempts-1), capped."""
    return float(min(cap, base * 2 ** max(attempts - 1, 0)))


def obsolete(job: Job, repo: Repository) -> bool:
    """Whether the target already holds the job's generation (or newer): copying would
    only risk replacing newer content with the older source's, under a generation that
    never decreases (an older job running after a newer one, e.g. after failover)."""
    target = next((r.generation for r in repo.replicas if r.storage == job.target), -1)
    return target >= job.source_generation


def runnable(job: Job, now: float, healthy: set[str]) -> bool:
    """Whether `job` is leasable at `now` and the storages it needs are healthy."""
    needs = {job.target, job.source} if job.change in (ChangeType.CREATE, ChangeType.UPDATE) else {job.target}
    return leasable(job, now) and needs <= healthy


def leasable(job: Job, now: float) -> bool:
    """Whether `lease_jobs` could hand out `job` at `now`."""
    if job.state is JobState.READY:
        return True
    if job.state is JobState.FAILED:
        return job.retry_at <= now
    return job.state is JobState.IN_PROGRESS and job.lease_expires_at <= now


class Replicator:
    """This proxy's replication workers."""

    def __init__(
        self,
        *,
        owner: str,
        store: MetadataStore,
        nodes: NodePool,
        metrics: ProxyMetrics,
        workers: int,
        lease_seconds: float,
        per_target: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.owner = owner
        self.store = store
        self.nodes = nodes
        self.metrics = metrics
        self.workers = max(1, workers)
        self.lease_seconds = lease_seconds
        self.per_target = per_target
        self.clock = clock
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        # Jobs done on the nodes whose `complete_job` waits for the next round.
        self._completing: list[tuple[Job, asyncio.Future[bool]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Lease and run jobs until `stop` is set; then cancel jobs still running."""
        renewer = asyncio.get_running_loop().create_task(self._renew_loop(stop))
        try:
            await run_periodically("replication", self.round, stop, POLL_INTERVAL, wake=self._wake)
            # Work done on the nodes is recorded rather than redone by the next owner.
            with contextlib.suppress(TimeoutError, GitraftError):
                await asyncio.wait_for(self.flush_completions(), STOP_FLUSH_SECONDS)
        finally:
            renewer.cancel()
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def round(self) -> list[Job]:
        """Send the completions waiting (see `_completed`) and lease what fits in the
        free worker slots, in one log entry; start the leased jobs and return them."""
        now = self.clock()
        free = self.workers - len(self._running) + len(self._completing)
        if free <= 0:
            return []
        healthy = await self.store.healthy_storages(now)
        # With completions to send, the lease rides in their entry: no need to ask first.
        leasing = bool(self._completing) or await self.store.runnable_job_exists(
            now, healthy, self.per_target or None
        )
        completing, self._completing = self._completing, []
        free = self.workers - len(self._running) + len(completing)
        loop = asyncio.get_running_loop()
        # Tasks first run in the order they were created, all in the next iteration of
        # the loop: the completions, then the lease, enter the command batcher together
        # (one log entry) and apply in that order (a finished job's target and
        # repository are free again for the lease).
        for job, done in completing:
            sending = loop.create_task(self._send_completion(job, done))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)
        if not leasing:
            return []
        lease = loop.create_task(
            self.store.lease_jobs(self.owner, now, self.lease_seconds, free, healthy, self.per_target or None)
        )
        jobs = await lease
        for job in jobs:
            if job.attempts == 0:  # first start: queued -> started
                self.metrics.replication_delay.labels(change=str(job.change)).observe(now - job.created_at)
            task = loop.create_task(self._run_job(job))
            self._running[job.id] = task
            task.add_done_callback(self._finisher(job.id))
        return jobs

    async def flush_completions(self) -> None:
        """Send the completions waiting, without a lease, and wait for them."""
        completing, self._completing = self._completing, []
        await asyncio.gather(*(self._send_completion(job, done) for job, done in completing))

    async def _send_completion(self, job: Job, done: asyncio.Future[bool]) -> None:
        try:
            result = await self.store.complete_job(job.id, self.owner, self.clock())
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not done.done():
                done.set_result(result)

    async def _completed(self, job: Job) -> bool:
        """Complete `job` with the next round's lease, in one log entry (a job costs one
        entry, not two); the `complete_job` result (False: a removed repository)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._completing.append((job, done))
        self._wake.set()
        return await done

    def _finisher(self, job_id: int) -> Callable[[asyncio.Task[None]], None]:
        def finished(_task: asyncio.Task[None]) -> None:
            self._running.pop(job_id, None)
            self._wake.set()

        return finished

    async def _run_job(self, job: Job) -> None:
        # This task's context only: the push that caused the job, else the job's own id.
        correlation_id.set(str(job.params.get("correlation_id") or f"job-{job.id}-{job.attempts}"))
        bind_fields(job_id=job.id, repository_id=job.repository_id, storage=job.target)
        started = time.monotonic()
        outcome = "ok"
        try:
            await self.execute(job)
            if not await self._completed(job):
                log.info("replication job of a removed repository", extra={"job_id": job.id})
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:
            outcome = "error"
            await self._fail(job, exc)
        finally:
            self.metrics.replication_jobs.labels(change=str(job.change), outcome=outcome).inc()
            self.metrics.replication_duration.labels(change=str(job.change)).observe(
                time.monotonic() - started
            )

    async def execute(self, job: Job) -> None:
        """Do the job's work on the nodes (no metadata change); raise on failure."""
        repo = await self.store.get_repository_by_id(job.repository_id)
        if job.change is ChangeType.DELETE_REPLICA:
            path = repo.replica_path if repo is not None else job.params.get("replica_path", "")
            if not path:
                return
            replica = shared_pb2.Repository(storage_name=job.target, relative_path=path)
            request = repository_pb2.RemoveRepositoryRequest(repository=replica)
            try:
                await self._call(
                    job.target, "RemoveRepository", request, repository_pb2.RemoveRepositoryResponse
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
        elif repo is None or job.change is ChangeType.RENAME:
            return
        elif job.change in (ChangeType.CREATE, ChangeType.UPDATE):
            if obsolete(job, repo):
                log.info("replication job obsolete", extra={"job_id": job.id, "target": job.target})
                return
            await self._replicate(job, repo)
        elif job.change is ChangeType.OPTIMIZE:
            request2 = repository_pb2.OptimizeRepositoryRequest(repository=_replica(repo, job.target))
            await self._call(
                job.target, "OptimizeRepository", request2, repository_pb2.OptimizeRepositoryResponse
            )

    async def _confirmed(self, job: Job, read: Repository) -> Repository | None:
        """Confirm the lease, then read the repository: the job's repository as this
        proxy's state has it once the confirming command applied here - which includes
        every command committed before it, as after a barrier - or None when it was
        removed or the target unassigned meanwhile (nothing to copy).
        FailedPreconditionError when the lease is lost to another owner.

        The confirming command is the lease itself while it is fresh (taken less than
        CONFIRM_AFTER of its time ago, by this proxy's clock: the job started right after
        `lease_jobs` returned), otherwise a `renew_leases` (the worker waited or was paused
        since). With a fresh lease `read` (the repository as `execute` read it, after the
        lease applied here) is that state: no second read."""
        if self.clock() > job.lease_expires_at - self.lease_seconds * (1 - CONFIRM_AFTER):
            try:
                await self.store.renew_leases(self.owner, [job.id], self.clock(), self.lease_seconds)
            except FailedPreconditionError:
                # a removal ends the repository's in-progress jobs: the lease goes with it
                if await self.store.get_repository_by_id(job.repository_id) is not None:
                    raise
            fresh = await self.store.get_repository_by_id(job.repository_id)
        else:
            fresh = read
        if fresh is not None and any(r.storage == job.target for r in fresh.replicas):
            return fresh
        log.info(
            "replication skipped: repository removed or target unassigned",
            extra={"job_id": job.id, "repository_id": job.repository_id, "target": job.target},
        )
        return None

    async def _replicate(self, job: Job, read: Repository) -> None:
        # The lease must still be ours: a worker that was paused past its lease (another
        # owner may have copied newer data meanwhile) must not mirror older refs over it.
        repo = await self._confirmed(job, read)
        if repo is None:
            return
        request = repository_pb2.ReplicateRepositoryRequest(
            repository=_replica(repo, job.target),
            source=_replica(repo, job.source),
            source_node=self.nodes.node_address(job.source),
        )
        response = await self._call(
            job.target, "ReplicateRepository", request, repository_pb2.ReplicateRepositoryResponse
        )
        log.info(
            "replicated",
            extra={
                "repository": repo.relative_path,
                "source": job.source,
                "target": job.target,
                "generation": job.source_generation,
                "bytes_fetched": response.bytes_fetched,
                "created_replica": response.created,
            },
        )

    async def _call(self, storage: str, method: str, request: Any, response_class: Any) -> Any:
        call = self.nodes.channel(storage).unary_unary(
            f"/gitraft.v1.RepositoryService/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return await call(request, metadata=self.nodes.metadata(), timeout=REPLICATE_TIMEOUT)

    async def _fail(self, job: Job, exc: Exception) -> None:
        error = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
        now = self.clock()
        retry_at = now + backoff_seconds(job.attempts + 1)
        log.warning(
            "replication job failed",
            extra={"job_id": job.id, "target": job.target, "attempts": job.attempts, "error": error},
        )
        try:
            failed = await self.store.fail_job(job.id, self.owner, error or type(exc).__name__, now, retry_at)
            if failed.state is JobState.DEAD:
                self.metrics.jobs_dead.labels(change=str(job.change)).inc()
                log.warning(
                    "replication job dead", extra={"job_id": job.id, "target": job.target, "error": error}
                )
        except GitraftError as err:
            log.info("could not record a failed job", extra={"job_id": job.id, "error": str(err)})

    async def renew(self) -> list[int]:
        """Renew the leases of every job running here in one command; cancel the jobs
        whose lease was lost (another owner may run them now: this copy must stop) and
        return their ids."""
        ids = sorted(self._running)
        if not ids:
            return []
        now = self.clock()
        try:
            await self.store.renew_leases(self.owner, ids, now, self.lease_seconds)
            return []
        except FailedPreconditionError:
            pass
        lost: list[int] = []
        for job_id in ids:  # rare: find which ones, one by one
            try:
                await self.store.renew_leases(self.owner, [job_id], now, self.lease_seconds)
            except FailedPreconditionError:
                lost.append(job_id)
        for job_id in lost:
            task = self._running.get(job_id)
            if task is not None:
                log.warning("lease lost; job cancelled", extra={"job_id": job_id})
                task.cancel()
        return lost

    async def _renew_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.lease_seconds / 3)
            try:
                await self.renew()
            except GitraftError as exc:
                log.info("lease renewal failed", extra={"error": str(exc)})


def _replica(repo: Repository, storage: str) -> shared_pb2.Repository:
    return shared_pb2.Repository(storage_name=storage, relative_path=repo.replica_path)
