"""Fixtures that put a proxy in front of the node test suite (as Gitaly's suite runs with
Praefect in front).

A `test_cluster_node_*.py` module imports the node tests it reruns and these fixtures;
its module-level definitions of `node`, `node_stub` and `new_repo` override the ones in
conftest.py, so the imported tests talk to a proxy:

- `node`: a `ProxyTarget` - `.address` and `.token` are the proxy's gRPC address and the
  clients' token; `.storage_path` is the storage directory of the cluster's only node.
- `node_stub(StubClass)`: a stub on the proxy whose calls carry the token.
- `new_repo(default_branch="")`: a repository created through the proxy
  (CreateRepository), as `(Repository message with the client path, path of its replica
  on the node's disk)`.

The cluster is one proxy and one node (replication factor 1), like Gitaly's
Praefect-in-front mode: the node tests write fixtures straight into the repository on
disk, which is only coherent with a single replica. The multi-replica behaviour is what
test_cluster_git.py and the chaos tests check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cluster.testing import LocalCluster, ManagedProcess
from tests.integration.conftest import NewRepo, repository_factory, token_stubs


@dataclass
class ProxyTarget:
    """What the node tests use of `node`, pointing at the proxy."""

    cluster: LocalCluster
    name: str
    address: str
    token: str
    storage_path: Path
    process: ManagedProcess | None


_shared: dict[str, ProxyTarget] = {}


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ProxyTarget:
    """One proxy in front of one node, started once and shared by every module that
    imports this fixture (each test works on its own repository); stopped when the
    test session ends, whatever its outcome."""
    if "target" not in _shared:
        cluster = LocalCluster(tmp_path_factory.mktemp("proxied"), proxies=1, nodes=1)
        request.config.add_cleanup(cluster.close)
        cluster.start()
        proxy, only = cluster.proxies["proxy-1"], cluster.nodes["node-a"]
        _shared["target"] = ProxyTarget(
            cluster, only.name, proxy.address, cluster.token, only.storage_path, proxy.process
        )
    return _shared["target"]


@pytest.fixture(scope="module")
def node_stub(node: ProxyTarget) -> Iterator[Callable[[type], Any]]:
    """`node_stub(SomeServiceStub)`: a stub on the proxy whose calls carry the token."""
    yield from token_stubs(node.address, node.token)


@pytest.fixture
def new_repo(node: ProxyTarget, node_stub: Callable[[type], Any], request: pytest.FixtureRequest) -> NewRepo:
    """Creates repositories through the proxy, named after the test."""

    def on_disk(rel: str) -> Path:
        meta = node.cluster.repository(rel)
        assert meta is not None, f"the proxy created {rel!r} but the cluster does not know it"
        return node.storage_path / meta.replica_path

    return repository_factory(node_stub, request, on_disk)
