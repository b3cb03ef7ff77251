"""The reconciler (run by the Raft leader proxy only): schedule what heals replicas.

Every `interval` seconds, after a barrier, one round:

1. **Outdated replicas without a live job** (the `outdated_replicas` index, never a scan
   of current repositories): an `update` job from the current primary for each, at most
   `batch` per healthy target storage a round, so a recovering node gets its backlog
   at a bounded rate. A replica whose update job died less than `dead_retry_after`
   seconds ago waits (a target that keeps failing is not hammered); after that it
   gets fresh work anyway, the dead job staying visible with its last error.
2. **Replicas missing on disk**: a cursor walks the repositories by id, `exists_batch`
   of them a round; every replica that should hold data (generation >= 0) on a
   healthy storage other than the primary is asked `RepositoryExists`. A missing
   one is reset and repaired from the primary (`schedule_repairs` with `reset`).
3. **Replicas no longer assigned**: unassigning queues a `delete_replica` job; one that
   died (its node was down long) is made ready again once its node is healthy and
   `dead_retry_after` has passed, so the data of an unassigned replica is removed.
   **Pruning**: completed jobs older than `completed_retention` and superseded
   dead/failed jobs, `batch` at a time.
4. **Re-assignment** (off unless `reassign_after` > 0): a repository with an assigned
   replica on a storage unhealthy for longer than `reassign_after` seconds gets a
   healthy unassigned storage instead (`set_replication_factor`: assign one, unassign
   the unhealthy non-primary one), at most `batch` a round.

Every repair goes through `schedule_repairs`, which copies from the primary the
fence accepts writes on, so the reconciler never races the write path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from cluster.background.periodic import run_periodically
from cluster.metadata.api import MetadataStore, RepairItem, Repository
from cluster.observability.metrics import ProxyMetrics
from cluster.proxy.forwarding import replica_of
from cluster.proxy.nodes import NodePool
from common.errors import GitraftError
from gitraft.v1 import repository_pb2

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0


@dataclass
class ReconcileReport:
    """What one round did (for logs and tests)."""

    scheduled: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    reassigned: list[tuple[str, str, str]] = field(default_factory=list)
    pruned: int = 0
    # Dead `delete_replica` jobs made ready again.
    retried: list[int] = field(default_factory=list)


async def replica_exists(nodes: NodePool, storage: str, repo: Repository) -> bool:
    """RepositoryExists on `storage` for its replica of `repo`; raises on a failed call."""
    call: Any = nodes.channel(storage).unary_unary(
        "/gitraft.v1.RepositoryService/RepositoryExists",
        request_serializer=repository_pb2.RepositoryExistsRequest.SerializeToString,
        response_deserializer=repository_pb2.RepositoryExistsResponse.FromString,
    )
    request = repository_pb2.RepositoryExistsRequest(repository=replica_of(repo, storage))
    response = await call(request, metadata=nodes.metadata(), timeout=PROBE_TIMEOUT)
    return bool(response.exists)


class Reconciler:
    def __init__(
        self,
        *,
        store: MetadataStore,
        nodes: NodePool,
        metrics: ProxyMetrics,
        interval: float = 5.0,
        batch: int = 100,
        exists_batch: int = 50,
        dead_retry_after: float = 30.0,
        completed_retention: float = 3600.0,
        reassign_after: float = 0.0,
        on_jobs_scheduled: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.metrics = metrics
        self.interval = interval
        self.batch = max(1, batch)
        self.exists_batch = max(0, exists_batch)
        self.dead_retry_after = dead_retry_after
        self.completed_retention = completed_retention
        self.reassign_after = reassign_after
        self.on_jobs_scheduled = on_jobs_scheduled
        self.clock = clock
        self._cursor = ""
        # storage -> when this leader first saw it unhealthy (re-assignment grace).
        self._down_since: dict[str, float] = {}

    async def round(self) -> ReconcileReport:
        """One pass (see the module doc); does nothing unless this proxy leads Raft."""
        report = ReconcileReport()
        if not self.store.is_leader():
            self._down_since.clear()
            return report
        await self.store.barrier()
        now = self.clock()
        healthy = await self.store.healthy_storages(now)
        await self._outdated(sorted(healthy), now, report)
        await self._missing(healthy, now, report)
        deletions = await self.store.dead_deletions(healthy, now - self.dead_retry_after, self.batch)
        if deletions:
            report.retried = await self.store.retry_jobs(deletions, False, now)
        pruned = await self.store.prune_jobs(now - self.completed_retention, self.batch)
        report.pruned = sum(pruned.values())
        if self.reassign_after > 0:
            await self._reassign(healthy, now, report)
        if report.scheduled or report.reassigned or report.retried:
            self.on_jobs_scheduled()
        return report

    async def _outdated(self, healthy: list[str], now: float, report: ReconcileReport) -> None:
        found = await self.store.outdated_without_job(healthy, self.batch)
        if not found:
            return
        cooling = await self.store.recently_dead(now - self.dead_retry_after)
        items = [
            RepairItem(repository_id=r, storage=s, reset=False, generation=-1)
            for r, s in found
            if (r, s) not in cooling
        ]
        await self._schedule(items, now, report, "outdated")

    async def _missing(self, healthy: set[str], now: float, report: ReconcileReport) -> None:
        if not self.exists_batch:
            return
        repos = await self.store.repositories_after(self._cursor, self.exists_batch)
        self._cursor = repos[-1].repository_id if len(repos) == self.exists_batch else ""
        probes = [
            (repo, r.storage, r.generation)
            for repo in repos
            for r in repo.replicas
            if r.generation >= 0 and r.storage != repo.primary and r.storage in healthy
        ]
        results = await asyncio.gather(
            *(replica_exists(self.nodes, s, repo) for repo, s, _ in probes), return_exceptions=True
        )
        items: list[RepairItem] = []
        for (repo, storage, generation), exists in zip(probes, results, strict=True):
            if isinstance(exists, BaseException):
                if not isinstance(exists, grpc.aio.AioRpcError | GitraftError):
                    raise exists
                continue  # unreachable now: the health checks and a later round decide
            if not exists:
                log.warning(
                    "replica missing on disk",
                    extra={"repository": repo.relative_path, "storage": storage, "generation": generation},
                )
                report.missing.append((repo.repository_id, storage))
                self.metrics.replicas_missing.inc()
                items.append(
                    RepairItem(
                        repository_id=repo.repository_id, storage=storage, reset=True, generation=generation
                    )
                )
        await self._schedule(items, now, report, "missing")

    async def _schedule(self, items: list[RepairItem], now: float, report: ReconcileReport, why: str) -> None:
        if not items:
            return
        outcomes = await self.store.schedule_repairs(items, now)
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome == "scheduled":
                report.scheduled.append((item["repository_id"], item["storage"]))
                self.metrics.reconciler_jobs.labels(reason=why).inc()
        if report.scheduled:
            log.info("reconciler scheduled repairs", extra={"reason": why, "count": len(report.scheduled)})

    async def _reassign(self, healthy: set[str], now: float, report: ReconcileReport) -> None:
        storages = [s.name for s in await self.store.storages()]
        for s in storages:
            if s in healthy:
                self._down_since.pop(s, None)
            else:
                self._down_since.setdefault(s, now)
        expired = [s for s, t in self._down_since.items() if now - t >= self.reassign_after]
        for down in sorted(expired):
            for repo in await self.store.replicas_on(down, self.batch):
                if repo.primary == down:
                    continue  # the elector moves the primary first
                assigned = {r.storage for r in repo.replicas}
                spare = sorted(s for s in healthy if s not in assigned)
                if not spare:
                    continue
                try:
                    await self.store.set_replication_factor(repo.repository_id, [spare[0]], [down], now)
                except GitraftError as exc:
                    log.info(
                        "re-assignment refused",
                        extra={"repository_id": repo.repository_id, "error": str(exc)},
                    )
                    continue
                report.reassigned.append((repo.repository_id, down, spare[0]))
                log.warning(
                    "replica re-assigned",
                    extra={"repository": repo.relative_path, "from": down, "to": spare[0]},
                )

    async def run(self, stop: asyncio.Event) -> None:
        await run_periodically("reconciler", self.round, stop, self.interval)
