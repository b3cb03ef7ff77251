"""ServerService on a real node process."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from cluster.testing import NodeProcess
from gitraft.v1 import repository_pb2, repository_pb2_grpc, server_pb2, server_pb2_grpc, shared_pb2
from tests.integration.conftest import git_cli


@pytest.fixture
def stub(node_stub: Callable[[type], Any]) -> Any:
    return node_stub(server_pb2_grpc.ServerServiceStub)


def test_server_info(stub: Any, node: NodeProcess) -> None:
    info = stub.ServerInfo(server_pb2.ServerInfoRequest())
    assert info.storage_name == "node-a"
    assert f"git version {info.git_version}" == git_cli("version", cwd=node.storage_path).strip()
    assert info.server_version
    free = shutil.disk_usage(node.storage_path).free
    assert info.free_bytes > 0 and abs(info.free_bytes - free) < free // 10 + 1


def test_list_storage_repositories(stub: Any, node: NodeProcess, node_stub: Callable[[type], Any]) -> None:
    repos = node_stub(repository_pb2_grpc.RepositoryServiceStub)
    storage = node.storage_path
    created = ["listing/a.git", "listing/deep/er/b.git", "listing/.hidden.git", "listing/plain"]
    for rel in created:
        req = repository_pb2.CreateRepositoryRequest(repository=shared_pb2.Repository(relative_path=rel))
        repos.CreateRepository(req)
    # Not listed: a plain directory, a file, a symbolic link to a repository, a leftover
    # temporary directory, and anything inside a repository (even a nested bare one).
    (storage / "listing/empty-dir").mkdir()
    (storage / "listing/file.git").write_text("not a repository")
    (storage / "listing/link.git").symlink_to(storage / "listing/a.git")
    git_cli("init", "-q", "--bare", "listing/.x.git.gitraft-tmp-new-123", cwd=storage)
    git_cli("init", "-q", "--bare", "listing/a.git/nested.git", cwd=storage)

    paths = [
        p
        for r in stub.ListStorageRepositories(server_pb2.ListStorageRepositoriesRequest())
        for p in r.relative_paths
    ]
    assert [p for p in paths if p.startswith("listing/")] == sorted(created)
    named = server_pb2.ListStorageRepositoriesRequest(storage_name="node-a")
    assert [p for r in stub.ListStorageRepositories(named) for p in r.relative_paths] == paths


def test_list_storage_repositories_wrong_storage(stub: Any) -> None:
    req = server_pb2.ListStorageRepositoriesRequest(storage_name="node-z")
    with pytest.raises(grpc.RpcError) as info:
        list(stub.ListStorageRepositories(req))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
