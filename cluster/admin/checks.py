"""CheckCluster: this proxy's checks of the cluster, one result per check.

    raft              a barrier commits within RAFT_TIMEOUT (quorum), naming the leader
    raft peers        every other proxy is connected to this one's Raft member
    node <name>       ServerInfo answers with the node token (reachable, token accepted)
    storage <name>    the node wrote, synced and removed a probe file in its storage

A check that fails says why in `detail`; nothing here raises for a failed check.
The client token is checked by the call itself (the proxy refuses a bad one), and the
clock skew between proxies is measured by the CLI, which talks to every proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from cluster.metadata.api import MetadataStore
from cluster.proxy.nodes import NodePool
from gitraft.v1 import cluster_pb2, server_pb2, server_pb2_grpc

RAFT_TIMEOUT = 5.0
NODE_TIMEOUT = 3.0


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB free"


async def raft_checks(
    store: MetadataStore, proxy_name: str, peer_names: dict[str, str]
) -> list[cluster_pb2.CheckResult]:
    results = []
    try:
        await asyncio.wait_for(store.barrier(), RAFT_TIMEOUT)
    except Exception as exc:
        results.append(
            cluster_pb2.CheckResult(name="raft", ok=False, detail=f"no quorum: {exc or 'timeout'}")
        )
    else:
        s = store.status()
        leader = proxy_name if s.leader_address == s.self_address else peer_names.get(s.leader_address, "")
        detail = f"quorum; leader {leader or s.leader_address} (term {s.term}), commit index {s.commit_index}"
        results.append(cluster_pb2.CheckResult(name="raft", ok=True, detail=detail))
    peers = store.status().peers
    down = sorted(peer_names.get(a, a) for a, connected in peers.items() if not connected)
    detail = f"not connected: {', '.join(down)}" if down else f"{len(peers)} peer(s) connected"
    results.append(cluster_pb2.CheckResult(name="raft peers", ok=not down, detail=detail))
    return results


async def node_checks(nodes: NodePool, storage: str) -> list[cluster_pb2.CheckResult]:
    try:
        stub = server_pb2_grpc.ServerServiceStub(nodes.channel(storage))
        info = await stub.ServerInfo(
            server_pb2.ServerInfoRequest(check_writable=True), metadata=nodes.metadata(), timeout=NODE_TIMEOUT
        )
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        why = (
            "node token refused"
            if code == grpc.StatusCode.UNAUTHENTICATED
            else f"unreachable ({code.name.lower()})"
        )
        return [
            cluster_pb2.CheckResult(
                name=f"node {storage}", ok=False, detail=f"{why} at {nodes.address(storage)}"
            ),
            cluster_pb2.CheckResult(
                name=f"storage {storage}", ok=False, detail="not checked: node unreachable"
            ),
        ]
    node = cluster_pb2.CheckResult(
        name=f"node {storage}",
        ok=True,
        detail=f"reachable with the node token at {nodes.address(storage)} (git {info.git_version})",
    )
    writable = cluster_pb2.CheckResult(
        name=f"storage {storage}",
        ok=info.storage_writable,
        detail=_gib(info.free_bytes) if info.storage_writable else f"not writable: {info.storage_error}",
    )
    return [node, writable]


async def check_cluster(
    store: MetadataStore,
    nodes: NodePool | None,
    proxy_name: str,
    peer_names: dict[str, str],
    clock: Callable[[], float],
) -> cluster_pb2.CheckClusterResponse:
    """Every check (see module doc); `proxy_time` is `clock()` once they are done."""
    checks = await raft_checks(store, proxy_name, peer_names)
    storages: list[str] = []
    try:
        storages = [s.name for s in await store.storages()]
    except Exception as exc:
        checks.append(cluster_pb2.CheckResult(name="storages", ok=False, detail=f"unreadable: {exc}"))
    if nodes is not None:
        for found in await asyncio.gather(*(node_checks(nodes, s) for s in storages)):
            checks.extend(found)
    return cluster_pb2.CheckClusterResponse(answered_by=proxy_name, checks=checks, proxy_time=clock())
