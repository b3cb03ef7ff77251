"""Token rotation without downtime, with a real proxy and a real node (issue #7).

A process accepts every token in `token` + `tokens` and sends the first. Rolling the
configs - old and new accepted, clients moved, then only the new one - keeps every
client with a currently accepted token served; a client left on the old token is
refused (UNAUTHENTICATED over gRPC, HTTP 401: git says "Authentication failed") once it is dropped.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from cluster.testing import LocalCluster, NodeProcess, commit_file, init_work_tree, run_git, token_channel
from gitraft.v1 import cluster_pb2, cluster_pb2_grpc, server_pb2, server_pb2_grpc


@dataclass
class RotatingNode(NodeProcess):
    """A node whose config also lists `extra_tokens` (the `tokens` key)."""

    extra_tokens: list[str] = field(default_factory=list)

    def write_config(self) -> None:
        super().write_config()
        with self.config_path.open("a") as f:
            f.write(f"tokens = {json.dumps(self.extra_tokens)}\n")


def server_info(address: str, token: str) -> str:
    """ServerInfo with `token`: the storage name of a node (empty from a proxy)."""
    with token_channel(address, token) as channel:
        reply = server_pb2_grpc.ServerServiceStub(channel).ServerInfo(
            server_pb2.ServerInfoRequest(), timeout=20
        )
    return str(reply.storage_name)


def cluster_status(address: str, token: str) -> None:
    with token_channel(address, token) as channel:
        cluster_pb2_grpc.ClusterServiceStub(channel).ClusterStatus(
            cluster_pb2.ClusterStatusRequest(), timeout=20
        )


def assert_refused(address: str, token: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        server_info(address, token)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def http_url(cluster: LocalCluster, token: str, path: str = "rot/repo.git") -> str:
    return f"http://x:{token}@{cluster.proxies['proxy-1'].http_addr}/{path}"


def test_client_token_rotation_through_a_proxy(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", proxies=1, nodes=1) as cluster:
        proxy = cluster.proxies["proxy-1"]
        old, new = cluster.token, secrets.token_hex(16)
        work = init_work_tree(tmp_path / "work")
        commit_file(work, "a.txt", "a")
        run_git("push", "-q", http_url(cluster, old), "main", cwd=work)
        assert_refused(proxy.address, new)

        # Overlap: the proxy accepts both; clients on either are served.
        cluster.layout.proxy_settings["tokens"] = [new]
        cluster.restart("proxy-1")
        for token in (old, new):
            server_info(proxy.address, token)
            cluster_status(proxy.address, token)
            run_git("ls-remote", http_url(cluster, token), cwd=work)
        commit_file(work, "b.txt", "b")
        run_git("push", "-q", http_url(cluster, new), "main", cwd=work)

        # Only the new token: the old one is refused over gRPC and HTTP.
        cluster.layout.token = new
        cluster.layout.proxy_settings["tokens"] = []
        cluster.restart("proxy-1")
        server_info(proxy.address, new)
        assert_refused(proxy.address, old)
        refused = run_git("ls-remote", http_url(cluster, old), cwd=work, check=False)
        assert refused.returncode != 0 and "Authentication failed" in refused.stderr
        head = run_git("rev-parse", "HEAD", cwd=work).stdout.strip()
        assert head in run_git("ls-remote", http_url(cluster, new), cwd=work).stdout


def test_node_token_rotation_keeps_the_proxy_served(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", proxies=1, nodes=1) as cluster:
        proxy = cluster.proxies["proxy-1"]
        node = cluster.nodes["node-a"]
        old, new = cluster.node_token, secrets.token_hex(16)
        work = init_work_tree(tmp_path / "work")

        def push(name: str) -> None:
            commit_file(work, name, name)
            run_git("push", "-q", http_url(cluster, cluster.token), "main", cwd=work)

        push("a.txt")
        assert_refused(node.address, new)

        # 1. The node accepts old and new; the proxy still sends the old one.
        cluster.stop("node-a")
        rotating = RotatingNode(
            node.name, node.workdir, old, port=node.port, die_with_parent=True, extra_tokens=[new]
        )
        cluster.nodes["node-a"] = rotating
        cluster.start_process("node-a")
        cluster.wait_health({"node-a": True})  # the proxy's view, not only the node's port
        push("b.txt")
        assert server_info(rotating.address, new) == "node-a"

        # 2. The proxy moves to the new token.
        cluster.layout.node_token = new
        cluster.restart("proxy-1")
        push("c.txt")

        # 3. The node drops the old token: the proxy keeps working, the old is refused.
        rotating.token, rotating.extra_tokens = new, []
        cluster.restart("node-a")
        cluster.wait_health({"node-a": True})
        push("d.txt")
        server_info(proxy.address, cluster.token)
        assert_refused(rotating.address, old)
