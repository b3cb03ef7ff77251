"""ClusterStatus: what an operator needs to see first.

Proxies come from this proxy's Raft member (its own term and indexes; for the others,
their Raft address, whether they are connected, and which one leads; names from the
config's `peer_names`). A node's `health_by_proxy` is every proxy's vote as recorded in
Raft (`MetadataStore.health_votes`; a proxy that stopped voting shows its last vote),
plus this proxy's local view for a node it has not voted on yet. `free_bytes` comes from
the node itself (ServerInfo, bounded by NODE_TIMEOUT; -1 when it does not answer or is
unhealthy for the cluster).
The counts of unavailable repositories, open write intents and dead jobs let a reader
decide at once whether data is at risk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cluster.metadata.api import MetadataStore
from cluster.proxy.nodes import NodePool
from gitraft.v1 import cluster_pb2, server_pb2, server_pb2_grpc

# Seconds a node has to answer ServerInfo for the status (nodes unhealthy for the
# cluster are not asked: the status must stay quick when nodes are down).
NODE_TIMEOUT = 0.5


async def free_bytes(nodes: NodePool | None, storage: str) -> int:
    """Bytes free on `storage`'s disk as the node reports it; -1 when it does not answer."""
    if nodes is None:
        return -1
    try:
        stub = server_pb2_grpc.ServerServiceStub(nodes.channel(storage))
        info = await stub.ServerInfo(
            server_pb2.ServerInfoRequest(), metadata=nodes.metadata(), timeout=NODE_TIMEOUT
        )
    except Exception:  # unreachable, refused, unknown: the status says "unknown"
        return -1
    return int(info.free_bytes)


def queue_by_state(depth: dict[tuple[str, str], int]) -> dict[str, int]:
    """(state, target) -> n summed by state."""
    out: dict[str, int] = {}
    for (state, _target), n in depth.items():
        out[state] = out.get(state, 0) + n
    return out


def proxies(
    store: MetadataStore, proxy_name: str, peer_names: dict[str, str]
) -> list[cluster_pb2.ProxyStatus]:
    s = store.status()
    me = cluster_pb2.ProxyStatus(
        name=proxy_name,
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
                name=peer_names.get(address, ""),
                raft_address=address,
                raft_role=role if connected else "unreachable",
                reachable=connected,
            )
        )
    return [me, *others]


async def cluster_status(
    *,
    store: MetadataStore,
    nodes: NodePool | None,
    proxy_name: str,
    peer_names: dict[str, str],
    local_health: Callable[[], dict[str, bool]],
    now: float,
) -> cluster_pb2.ClusterStatusResponse:
    """The whole status, read after a barrier."""
    await store.barrier()
    healthy = await store.healthy_storages(now)
    votes = await store.health_votes()
    local = local_health()
    replicas, primaries = await store.storage_counts()  # indexed: no scan of every repository
    storages = await store.storages()
    free = await asyncio.gather(*(free_bytes(nodes if s.name in healthy else None, s.name) for s in storages))
    node_list = []
    for s, free_here in zip(storages, free, strict=True):
        by_proxy = {proxy: v[s.name].healthy for proxy, v in votes.items() if s.name in v}
        if s.name in local:
            by_proxy.setdefault(proxy_name, local[s.name])
        node_list.append(
            cluster_pb2.NodeHealth(
                storage=s.name,
                address=s.address,
                healthy=s.name in healthy,
                health_by_proxy=by_proxy,
                repositories=replicas.get(s.name, 0),
                primaries=primaries.get(s.name, 0),
                free_bytes=free_here,
            )
        )
    unavailable, partial = await store.dataloss(now, include_partial=True)
    depth = queue_by_state(await store.queue_depth())
    return cluster_pb2.ClusterStatusResponse(
        answered_by=proxy_name,
        proxies=proxies(store, proxy_name, peer_names),
        nodes=node_list,
        repository_count=await store.repository_count(),
        queue_depth=depth,
        unavailable_repositories=len(unavailable),
        partially_available_repositories=len(partial),
        open_write_intents=len(await store.all_open_intents()),
        dead_jobs=depth.get("dead", 0),
    )
