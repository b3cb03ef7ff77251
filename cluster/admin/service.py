"""ClusterService (the operator API) and TransactionService, served by the proxy itself.

`ClusterAdmin` has one thin method per RPC; the work is in the role modules of this
package (status, operations, tracking, checks). Every answer comes from this proxy's
applied metadata after a barrier, so it includes every change acknowledged anywhere
before the call; every change is a Raft command.

TransactionService is registered but strong consistency is a later issue: every vote
is refused with FAILED_PRECONDITION "strong consistency is not enabled".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cluster.admin import checks, operations, status, tracking
from cluster.admin.views import cluster_repository, lookup, require
from cluster.background.verifier import Verifier, verification_response
from cluster.metadata.api import JobState, MetadataStore
from cluster.proxy.nodes import NodePool
from common.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from gitraft.v1 import cluster_pb2, cluster_pb2_grpc, transaction_pb2, transaction_pb2_grpc

# Jobs read at most, before filtering by repository.
JOB_SCAN_LIMIT = 100_000


class ClusterAdmin(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(
        self,
        *,
        proxy_name: str,
        store: MetadataStore,
        local_health: Callable[[], dict[str, bool]],
        peer_names: dict[str, str] | None = None,
        nodes: NodePool | None = None,
        replication_factor: int = 3,
        clock: Callable[[], float] = time.time,
        verifier: Verifier | None = None,
    ) -> None:
        self.verifier = verifier
        self.proxy_name = proxy_name
        self.peer_names = dict(peer_names or {})
        self.store = store
        self.local_health = local_health
        self.nodes = nodes
        self.replication_factor = replication_factor
        self.clock = clock

    def _node_pool(self) -> NodePool:
        if self.nodes is None:
            raise UnavailableError("this proxy has no node connections")
        return self.nodes

    async def ClusterStatus(
        self, request: cluster_pb2.ClusterStatusRequest, context: Any
    ) -> cluster_pb2.ClusterStatusResponse:
        return await status.cluster_status(
            store=self.store,
            nodes=self.nodes,
            proxy_name=self.proxy_name,
            peer_names=self.peer_names,
            local_health=self.local_health,
            now=self.clock(),
        )

    async def ListClusterRepositories(
        self, request: cluster_pb2.ListClusterRepositoriesRequest, context: Any
    ) -> cluster_pb2.ListClusterRepositoriesResponse:
        await self.store.barrier()
        healthy = await self.store.healthy_storages(self.clock())
        if request.relative_path:
            one = await lookup(self.store, request.relative_path)
            repos = [one] if one is not None else []
        else:
            repos = await self.store.list_repositories()
        return cluster_pb2.ListClusterRepositoriesResponse(
            repositories=[cluster_repository(r, healthy) for r in repos]
        )

    async def DatalossCheck(
        self, request: cluster_pb2.DatalossCheckRequest, context: Any
    ) -> cluster_pb2.DatalossCheckResponse:
        await self.store.barrier()
        now = self.clock()
        healthy = await self.store.healthy_storages(now)
        unavailable, partial = await self.store.dataloss(now, request.include_partially_available)
        return cluster_pb2.DatalossCheckResponse(
            unavailable=[cluster_repository(r, healthy) for r in unavailable],
            partially_available=[cluster_repository(r, healthy) for r in partial],
        )

    async def ListReplicationJobs(
        self, request: cluster_pb2.ListReplicationJobsRequest, context: Any
    ) -> cluster_pb2.ListReplicationJobsResponse:
        """Jobs oldest first, at most `limit` (1000 when 0), only those of
        `relative_path` when set (NOT_FOUND for an unknown repository)."""
        try:
            states = [JobState(s) for s in request.states] or None
        except ValueError as exc:
            raise InvalidArgumentError(f"unknown job state in {list(request.states)!r}") from exc
        await self.store.barrier()
        limit = request.limit or 1000
        if request.relative_path:
            only = await require(self.store, request.relative_path)
            found = await self.store.list_jobs(states, JOB_SCAN_LIMIT)
            jobs = [j for j in found if j.repository_id == only.repository_id][:limit]
        else:
            jobs = await self.store.list_jobs(states, limit)
        paths = await self.store.repository_paths([j.repository_id for j in jobs])
        return cluster_pb2.ListReplicationJobsResponse(
            jobs=[
                cluster_pb2.ReplicationJob(
                    id=j.id,
                    repository_id=j.repository_id,
                    relative_path=paths.get(j.repository_id, j.params.get("relative_path", "")),
                    change=str(j.change),
                    source=j.source,
                    target=j.target,
                    source_generation=j.source_generation,
                    state=str(j.state),
                    attempts=j.attempts,
                    lease_owner=j.lease_owner,
                    last_error=j.last_error,
                )
                for j in jobs
            ],
            depth_by_state=status.queue_by_state(await self.store.queue_depth()),
        )

    async def SetPrimary(
        self, request: cluster_pb2.SetPrimaryRequest, context: Any
    ) -> cluster_pb2.SetPrimaryResponse:
        return await operations.set_primary(self.store, request, self.clock())

    async def AcceptDataloss(
        self, request: cluster_pb2.AcceptDatalossRequest, context: Any
    ) -> cluster_pb2.AcceptDatalossResponse:
        return await operations.accept_dataloss(self.store, request, self.clock())

    async def SetReplicationFactor(
        self, request: cluster_pb2.SetReplicationFactorRequest, context: Any
    ) -> cluster_pb2.SetReplicationFactorResponse:
        return await operations.set_replication_factor(self.store, request, self.clock())

    async def RemoveClusterRepository(
        self, request: cluster_pb2.RemoveClusterRepositoryRequest, context: Any
    ) -> cluster_pb2.RemoveClusterRepositoryResponse:
        return await operations.remove_repository(self.store, request, self.clock())

    async def TrackRepository(
        self, request: cluster_pb2.TrackRepositoryRequest, context: Any
    ) -> cluster_pb2.TrackRepositoryResponse:
        return await tracking.track(
            self.store, self._node_pool(), request, self.replication_factor, self.clock()
        )

    async def ListUntrackedRepositories(
        self, request: cluster_pb2.ListUntrackedRepositoriesRequest, context: Any
    ) -> cluster_pb2.ListUntrackedRepositoriesResponse:
        return await tracking.list_untracked(self.store, self._node_pool())

    async def CheckCluster(
        self, request: cluster_pb2.CheckClusterRequest, context: Any
    ) -> cluster_pb2.CheckClusterResponse:
        return await checks.check_cluster(
            self.store, self.nodes, self.proxy_name, self.peer_names, self.clock
        )

    async def VerifyRepositories(
        self, request: cluster_pb2.VerifyRepositoriesRequest, context: Any
    ) -> cluster_pb2.VerifyRepositoriesResponse:
        if self.verifier is None:
            raise FailedPreconditionError("verification is not enabled on this proxy")
        return verification_response(await self.verifier.verify_paths(list(request.relative_paths)))

    async def RetryReplicationJobs(
        self, request: cluster_pb2.RetryReplicationJobsRequest, context: Any
    ) -> cluster_pb2.RetryReplicationJobsResponse:
        if not request.job_ids and not request.all_dead:
            raise InvalidArgumentError("name the jobs to retry or ask for every dead one")
        retried = await self.store.retry_jobs(list(request.job_ids), request.all_dead, self.clock())
        return cluster_pb2.RetryReplicationJobsResponse(retried=retried)


class Transactions(transaction_pb2_grpc.TransactionServiceServicer):
    """Strong-mode votes: not enabled yet (a later issue)."""

    async def VoteTransaction(
        self, request: transaction_pb2.VoteTransactionRequest, context: Any
    ) -> transaction_pb2.VoteTransactionResponse:
        raise FailedPreconditionError("strong consistency is not enabled")

    async def StopTransaction(
        self, request: transaction_pb2.StopTransactionRequest, context: Any
    ) -> transaction_pb2.StopTransactionResponse:
        raise FailedPreconditionError("strong consistency is not enabled")
