"""What the coordinator's read path and write path share: their dependencies, the
repository lookup after a barrier, and the calls to nodes.

`Calls` is the base of `ReadPath` (cluster.proxy.reads) and `WritePath`
(cluster.proxy.writes); `Coordinator` (cluster.proxy.coordinator) combines them and
sets the attributes declared here. The calls to nodes (cluster.proxy.forwarding) are
methods so that tests can stand in for nodes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from cluster.metadata.api import MetadataStore, Repository
from cluster.observability.metrics import ProxyMetrics
from cluster.proxy.barrier import SharedBarrier
from cluster.proxy.forwarding import call_timeout, forward_stream, forward_unary, read_checksum
from cluster.proxy.nodes import NodePool
from cluster.proxy.router import MethodInfo, Registry
from common.errors import NotFoundError
from common.logs import bind_fields

# The one RPC answered (false) rather than refused for a repository that does not exist.
EXISTS = "/gitraft.v1.RepositoryService/RepositoryExists"


class Calls:
    """The coordinator's state (set by `Coordinator.__init__`) and its calls to nodes."""

    proxy_name: str
    store: MetadataStore
    registry: Registry
    nodes: NodePool
    metrics: ProxyMetrics
    # Seconds a write's intent stays open before the leader may repair it.
    write_intent_timeout: float
    # Seconds a read waits for a node's first response while another replica could serve it.
    read_first_response_timeout: float
    clock: Callable[[], float]
    # Called when a write scheduled replication jobs (wakes the replicator).
    on_jobs_scheduled: Callable[[], None]
    barrier: SharedBarrier

    async def lookup(self, relative_path: str, info: MethodInfo) -> Repository | None:
        """The repository after a (shared) barrier; NotFoundError unless RepositoryExists."""
        bind_fields(repository=relative_path)  # this RPC's log lines name it
        await self.barrier.wait()
        repo = await self.store.get_repository(relative_path)
        if repo is None and info.path != EXISTS:
            raise NotFoundError(f"repository not found: {relative_path!r}")
        return repo

    async def checksum(self, repo: Repository, storage: str) -> str:
        return await read_checksum(self.nodes, repo, storage)

    async def call_unary(
        self, info: MethodInfo, storage: str, request: bytes, context: Any, limit: float | None = None
    ) -> bytes:
        """Forward one unary request to `storage` within the client's deadline and `limit`
        seconds; NodeError with the node's status."""
        return await forward_unary(self.nodes, info, storage, request, call_timeout(context, limit))

    def call_stream(
        self,
        info: MethodInfo,
        storage: str,
        first: bytes,
        rest: AsyncIterator[bytes] | None,
        context: Any,
        limit: float | None = None,
    ) -> AsyncIterator[bytes]:
        """Forward a response-streaming call to `storage`, relaying each message as it
        comes, within the client's deadline and `limit` seconds."""
        return forward_stream(self.nodes, info, storage, first, rest, call_timeout(context, limit))
