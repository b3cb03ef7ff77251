"""InfoRefsUploadPack with protocol v2 on a real node: the cached capability list is
what git says, and a change of the repository's config is seen at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gitraft.v1 import smarthttp_pb2, smarthttp_pb2_grpc
from tests.integration.conftest import NewRepo, git_cli


def advertisement(node_stub: Callable[[type], Any], repo: Any, git_protocol: str) -> bytes:
    stub = node_stub(smarthttp_pb2_grpc.SmartHTTPServiceStub)
    request = smarthttp_pb2.InfoRefsRequest(repository=repo, git_protocol=git_protocol)
    return b"".join(r.data for r in stub.InfoRefsUploadPack(request, timeout=30))


def test_v2_capabilities_are_served_again_and_follow_the_config(
    node_stub: Callable[[type], Any], new_repo: NewRepo
) -> None:
    repo, path = new_repo()
    first = advertisement(node_stub, repo, "version=2")
    assert b"ls-refs" in first and b"filter" in first
    assert advertisement(node_stub, repo, "version=2") == first
    assert b"ref-in-want" not in first

    git_cli("config", "uploadpack.allowRefInWant", "true", cwd=path)
    changed = advertisement(node_stub, repo, "version=2")
    assert b"ref-in-want" in changed
    assert advertisement(node_stub, repo, "version=2") == changed
    assert advertisement(node_stub, repo, "") != changed  # v0: the refs, never cached
