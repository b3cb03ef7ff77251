"""The verifier: compare replicas with their primary, repair the ones that differ.

`verify(repo)` reads, on every assigned replica at once, the checksum of its refs
(`RepositoryChecksum`, node/checksum.py) and its default branch (`FindDefaultBranch`).
A replica at the primary's generation, when that is the repository's latest, must
equal the primary on both; one that differs, or is missing on disk (NOT_FOUND), is a
**mismatch**: `schedule_repairs` (its verifier form, with the replicas that matched)
raises the primary and the matching replicas to the next generation, so the
mismatching one is outdated (no read is routed to it) and no generation goes down, and
queues an `update` job from the current primary, which mirrors refs and HEAD exactly.
(A primary that differs from every other replica usually holds a write that failed, or
whose answer was lost, after it changed refs: that is its content now.) Replicas at an
older generation are reported, not compared (their update is the reconciler's
business); nothing is compared while the primary is itself outdated or unreadable.

The background loop (Raft leader only) runs every `tick` seconds and verifies enough
repositories that each is verified about once per `interval` seconds (a cursor by id;
at most `max_per_round` a round), replicas flagged `needs_verify` (a failed write may
have changed their refs) first; after they are compared the flags are cleared.
`VerifyRepositories` calls `verify` at once, on any proxy.
"""

from __future__ import annotations

import asyncio
import logging
import math
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
from gitraft.v1 import cluster_pb2, ref_pb2, repository_pb2

log = logging.getLogger(__name__)

READ_TIMEOUT = 10.0


@dataclass
class ReplicaReport:
    storage: str
    generation: int
    checksum: str = ""
    default_branch: str = ""
    matches: bool = False
    error: str = ""
    missing: bool = False


@dataclass
class Verification:
    """The outcome for one repository (the shape of `RepositoryVerification`)."""

    repository_id: str
    relative_path: str
    primary: str
    replicas: list[ReplicaReport] = field(default_factory=list)
    repairs_scheduled: list[str] = field(default_factory=list)
    # Whether the primary could be read at the repository's latest generation.
    comparable: bool = False

    @property
    def mismatches(self) -> int:
        return sum(1 for r in self.replicas if r.storage != self.primary and not r.matches and not r.error)


async def _unary(nodes: NodePool, storage: str, method: str, request: Any, response_class: Any) -> Any:
    call: Any = nodes.channel(storage).unary_unary(
        method,
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_class.FromString,
    )
    return await call(request, metadata=nodes.metadata(), timeout=READ_TIMEOUT)


async def read_replica(nodes: NodePool, repo: Repository, storage: str, generation: int) -> ReplicaReport:
    """Checksum and default branch of one replica; `error` (a short reason, no path)
    when it cannot be read, `missing` when the node says NOT_FOUND."""
    report = ReplicaReport(storage, generation)
    target = replica_of(repo, storage)
    try:
        checksum, branch = await asyncio.gather(
            _unary(
                nodes,
                storage,
                "/gitraft.v1.RepositoryService/RepositoryChecksum",
                repository_pb2.RepositoryChecksumRequest(repository=target),
                repository_pb2.RepositoryChecksumResponse,
            ),
            _unary(
                nodes,
                storage,
                "/gitraft.v1.RefService/FindDefaultBranch",
                ref_pb2.FindDefaultBranchRequest(repository=target),
                ref_pb2.FindDefaultBranchResponse,
            ),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            report.missing = True
            return report
        report.error = f"{storage} not readable ({exc.code().name.lower()})"
        return report
    report.checksum = str(checksum.checksum)
    report.default_branch = str(branch.name)
    return report


class Verifier:
    def __init__(
        self,
        *,
        store: MetadataStore,
        nodes: NodePool,
        metrics: ProxyMetrics,
        interval: float = 86400.0,
        tick: float = 10.0,
        max_per_round: int = 20,
        on_jobs_scheduled: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.metrics = metrics
        self.interval = interval
        self.tick = tick
        self.max_per_round = max(1, max_per_round)
        self.on_jobs_scheduled = on_jobs_scheduled
        self.clock = clock
        self._cursor = ""
        self._credit = 0.0

    async def verify(self, repo: Repository, repair: bool = True) -> Verification:
        """Compare every replica of `repo` with its primary (see the module doc) and,
        with `repair`, schedule repairs for the mismatches."""
        result = Verification(repo.repository_id, repo.relative_path, repo.primary)
        replicas = list(repo.replicas)
        result.replicas = list(
            await asyncio.gather(*(read_replica(self.nodes, repo, r.storage, r.generation) for r in replicas))
        )
        self.metrics.verifier_checked.inc(len(result.replicas))
        primary = next((r for r in result.replicas if r.storage == repo.primary), None)
        latest = repo.generation
        if primary is None or primary.generation != latest or primary.error or primary.missing:
            for r in result.replicas:
                if r.storage != repo.primary and not r.error:
                    r.error = "primary not comparable (outdated, missing or unreachable)"
            if primary is not None:
                primary.matches = not (primary.error or primary.missing)
            return result
        primary.matches = True
        result.comparable = True
        items: list[RepairItem] = []
        matching = [
            r.storage
            for r in result.replicas
            if r is primary
            or (
                not r.error
                and r.generation == latest
                and (r.checksum, r.default_branch) == (primary.checksum, primary.default_branch)
            )
        ]
        for r in result.replicas:
            if r is primary or r.error:
                continue
            if r.generation != latest:
                r.error = f"outdated (generation {r.generation} < {latest})"
                continue
            r.matches = (r.checksum, r.default_branch) == (primary.checksum, primary.default_branch)
            if not r.matches:
                self.metrics.verifier_mismatches.inc()
                log.warning(
                    "replica differs from its primary",
                    extra={
                        "repository": repo.relative_path,
                        "storage": r.storage,
                        "primary": repo.primary,
                        "missing": r.missing,
                    },
                )
                items.append(
                    RepairItem(
                        repository_id=repo.repository_id,
                        storage=r.storage,
                        reset=True,
                        generation=latest,
                        matching=matching,
                    )
                )
        if repair and items:
            outcomes = await self.store.schedule_repairs(items, self.clock())
            for item, outcome in zip(items, outcomes, strict=True):
                if outcome == "scheduled":
                    result.repairs_scheduled.append(item["storage"])
                    self.metrics.verifier_repairs.inc()
            if result.repairs_scheduled:
                self.on_jobs_scheduled()
        return result

    async def verify_paths(self, relative_paths: list[str]) -> list[Verification]:
        """Verify the named repositories (NotFoundError for an unknown one), or every
        repository when none is named (a page at a time)."""
        await self.store.barrier()
        if relative_paths:
            repos = [await self._named(p) for p in relative_paths]
            return [await self.verify(r) for r in repos]
        out: list[Verification] = []
        after = ""
        while page := await self.store.repositories_after(after, 50):
            out += await asyncio.gather(*(self.verify(r) for r in page))
            after = page[-1].repository_id
        return out

    async def _named(self, path: str) -> Repository:
        from common.errors import NotFoundError

        repo = await self.store.get_repository(path)
        if repo is None and not path.endswith(".git"):
            repo = await self.store.get_repository(f"{path}.git")
        if repo is None:
            raise NotFoundError(f"repository not found: {path!r}")
        return repo

    async def round(self) -> list[Verification]:
        """One background round (leader only): flagged replicas first, then the cursor."""
        if not self.store.is_leader():
            return []
        await self.store.barrier()
        flagged = await self.store.needs_verify()
        done: list[Verification] = []
        seen: set[str] = set()
        compared: set[str] = set()
        for rid in dict.fromkeys(r for r, _ in flagged[: self.max_per_round]):
            repo = await self.store.get_repository_by_id(rid)
            if repo is not None:
                done.append(await self.verify(repo))
                seen.add(rid)
                if done[-1].comparable:
                    compared.add(rid)
        if compared:  # a flag stays until its repository could be compared
            await self.store.clear_needs_verify([(r, s) for r, s in flagged if r in compared], self.clock())
        count = await self.store.repository_count()
        self._credit = min(self.max_per_round, self._credit + count * self.tick / max(self.interval, 1e-9))
        take = min(math.floor(self._credit), self.max_per_round - len(done))
        if take > 0:
            page = await self.store.repositories_after(self._cursor, take)
            self._cursor = page[-1].repository_id if len(page) == take else ""
            self._credit -= len(page)
            done += [await self.verify(r) for r in page if r.repository_id not in seen]
        return done

    async def run(self, stop: asyncio.Event) -> None:
        await run_periodically("verifier", self.round, stop, self.tick)


def verification_response(results: list[Verification]) -> cluster_pb2.VerifyRepositoriesResponse:
    """The `VerifyRepositories` answer for these results."""
    return cluster_pb2.VerifyRepositoriesResponse(
        repositories=[
            cluster_pb2.RepositoryVerification(
                relative_path=v.relative_path,
                primary=v.primary,
                replicas=[
                    cluster_pb2.ReplicaChecksum(
                        storage=r.storage,
                        generation=r.generation,
                        checksum=r.checksum,
                        default_branch=r.default_branch,
                        matches=r.matches,
                        error=r.error or ("missing on disk" if r.missing else ""),
                    )
                    for r in v.replicas
                ],
                repairs_scheduled=v.repairs_scheduled,
            )
            for v in results
        ],
        mismatches=sum(v.mismatches for v in results),
    )
