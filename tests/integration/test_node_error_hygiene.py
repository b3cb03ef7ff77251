"""What a client sees when a request is bad (issue #7, finding 4), on a real node.

No message a client gets carries an absolute path or a Python exception class name, and
long client values are cut: a 4,096-character path gave `INTERNAL: internal error:
OSError: [Errno 36] File name too long: '/abs/...'`; a 3,000 x "é" path made the message
exceed gRPC's 16 KiB metadata limit, so the client saw RESOURCE_EXHAUSTED. Both are
INVALID_ARGUMENT now. test_cluster_node_error_hygiene.py reruns the path tests through a
proxy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from gitraft.v1 import repository_pb2, repository_pb2_grpc, shared_pb2, smarthttp_pb2, smarthttp_pb2_grpc

CALL_TIMEOUT = 30.0
BAD_PATHS = {
    "4096 characters": "a" * 4096,
    "4096 characters in segments": "/".join(["b" * 99] * 41)[:4096],
    "3000 x é": "é" * 3000,
    "a 300-byte segment": "x/" + "é" * 150 + ".git",
    "many short segments": "c/" * 2000 + "d.git",
}
# An absolute path as a message would show it: after a quote, a space or the start.
_ABSOLUTE = re.compile(r"(^|[\s'\"(=:])/[A-Za-z0-9_.@-]")


def assert_clean(details: str) -> None:
    """No exception class, errno or absolute path; short enough for any client."""
    for leak in ("Error:", "Errno", "Traceback", "OSError", "Exception"):
        assert leak not in details, details
    assert not _ABSOLUTE.search(details), details
    assert len(details) <= 1000, len(details)


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


@pytest.mark.parametrize("path", BAD_PATHS.values(), ids=BAD_PATHS.keys())
def test_an_unusable_path_is_invalid_argument_with_a_clean_message(
    node_stub: Callable[[type], Any], path: str
) -> None:
    repositories = node_stub(repository_pb2_grpc.RepositoryServiceStub)
    smarthttp = node_stub(smarthttp_pb2_grpc.SmartHTTPServiceStub)
    repo = shared_pb2.Repository(relative_path=path)
    calls = {
        "RepositoryExists": lambda: repositories.RepositoryExists(
            repository_pb2.RepositoryExistsRequest(repository=repo), timeout=CALL_TIMEOUT
        ),
        "CreateRepository": lambda: repositories.CreateRepository(
            repository_pb2.CreateRepositoryRequest(repository=repo), timeout=CALL_TIMEOUT
        ),
        "InfoRefsUploadPack": lambda: list(
            smarthttp.InfoRefsUploadPack(smarthttp_pb2.InfoRefsRequest(repository=repo), timeout=CALL_TIMEOUT)
        ),
    }
    for name, call in calls.items():
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, error.code(), error.details())
        assert_clean(error.details() or "")
    # The node still serves.
    ok = repository_pb2.RepositoryExistsRequest(repository=shared_pb2.Repository(relative_path="fine.git"))
    assert not repositories.RepositoryExists(ok, timeout=CALL_TIMEOUT).exists
