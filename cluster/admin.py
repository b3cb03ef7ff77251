"""ClusterService (the operator API) and TransactionService, served by the proxy itself.

Every answer comes from this proxy's applied metadata after a barrier, so it includes
every change acknowledged anywhere before the call. ClusterStatus describes the other
proxies from what this proxy's Raft member knows of them: their Raft address, whether
they are connected, and which one leads; term and indexes are known for this proxy
only; their names come from the config's `peer_names`. A node's `health_by_proxy` is
every proxy's vote as recorded in Raft (`MetadataStore.health_votes`, the votes
`healthy` is computed from; a proxy that stopped voting shows its last vote), plus this
proxy's local view for a node it has not recorded a vote on yet.

TransactionService is registered but strong consistency is a later issue: every vote
is refused with FAILED_PRECONDITION "strong consistency is not enabled".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cluster.metadata.api import JobState, MetadataStore, Repository
from cluster.verifier import Verifier, verification_response
from common.errors import FailedPreconditionError, InvalidArgumentError
from gitraft.v1 import cluster_pb2, cluster_pb2_grpc, transaction_pb2, transaction_pb2_grpc


class ClusterAdmin(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(
        self,
        *,
        proxy_name: str,
        store: MetadataStore,
        local_health: Callable[[], dict[str, bool]],
        peer_names: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        verifier: Verifier | None = None,
    ) -> None:
        self.verifier = verifier
        self.proxy_name = proxy_name
        self.peer_names = dict(peer_names or {})
        self.store = store
        self.local_health = local_health
        self.clock = clock

    async def ClusterStatus(
        self, request: cluster_pb2.ClusterStatusRequest, context: Any
    ) -> cluster_pb2.ClusterStatusResponse:
        await self.store.barrier()
        now = self.clock()
        healthy = await self.store.healthy_storages(now)
        votes = await self.store.health_votes()
        local = self.local_health()
        nodes = []
        for s in await self.store.storages():
            by_proxy = {proxy: v[s.name].healthy for proxy, v in votes.items() if s.name in v}
            if s.name in local:
                by_proxy.setdefault(self.proxy_name, local[s.name])
            nodes.append(
                cluster_pb2.NodeHealth(
                    storage=s.name, address=s.address, healthy=s.name in healthy, health_by_proxy=by_proxy
                )
            )
        depth = await self.store.job_counts()
        return cluster_pb2.ClusterStatusResponse(
            answered_by=self.proxy_name,
            proxies=self._proxies(),
            nodes=nodes,
            repository_count=await self.store.repository_count(),
            queue_depth=depth,
        )

    async def ListClusterRepositories(
        self, request: cluster_pb2.ListClusterRepositoriesRequest, context: Any
    ) -> cluster_pb2.ListClusterRepositoriesResponse:
        await self.store.barrier()
        healthy = await self.store.healthy_storages(self.clock())
        if request.relative_path:
            one = await self.store.get_repository(request.relative_path)
            if one is None and not request.relative_path.endswith(".git"):
                # The gateway names `group/repo` as `group/repo.git`.
                one = await self.store.get_repository(f"{request.relative_path}.git")
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
        try:
            states = [JobState(s) for s in request.states] or None
        except ValueError as exc:
            raise InvalidArgumentError(f"unknown job state in {list(request.states)!r}") from exc
        await self.store.barrier()
        jobs = await self.store.list_jobs(states, request.limit or 1000)
        paths = await self.store.repository_paths([j.repository_id for j in jobs])
        depth = await self.store.job_counts()
        return cluster_pb2.ListReplicationJobsResponse(
            jobs=[
                cluster_pb2.ReplicationJob(
                    id=j.id,
                    repository_id=j.repository_id,
                    relative_path=paths.get(j.repository_id, ""),
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
            depth_by_state=depth,
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

    def _proxies(self) -> list[cluster_pb2.ProxyStatus]:
        s = self.store.status()
        me = cluster_pb2.ProxyStatus(
            name=self.proxy_name,
            raft_address=s.self_address,
            raft_role=s.role,
            raft_term=s.term,
            commit_index=s.commit_index,
            applied_index=s.applied_index,
            reachable=True,
        )
        others = []
        for address, connected in sorted(s.peers.items()):
            role = "leader" if address == s.leader_address else "follower"
            others.append(
                cluster_pb2.ProxyStatus(
                    name=self.peer_names.get(address, ""),
                    raft_address=address,
                    raft_role=role if connected else "unreachable",
                    reachable=connected,
                )
            )
        return [me, *others]


def cluster_repository(repo: Repository, healthy: set[str]) -> cluster_pb2.ClusterRepository:
    latest = repo.generation
    return cluster_pb2.ClusterRepository(
        repository_id=repo.repository_id,
        relative_path=repo.relative_path,
        replica_path=repo.replica_path,
        primary=repo.primary,
        generation=latest,
        replication_factor=repo.replication_factor,
        replicas=[
            cluster_pb2.ReplicaStatus(
                storage=r.storage,
                generation=r.generation,
                assigned=r.assigned,
                healthy=r.storage in healthy,
                up_to_date=r.assigned and r.generation == latest,
            )
            for r in repo.replicas
        ],
    )


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
