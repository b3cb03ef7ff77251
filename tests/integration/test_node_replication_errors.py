"""ReplicateRepository against a misbehaving source (issue #7, finding 4).

The source is a real gRPC server in the test process that speaks RepositoryService
badly on purpose: an invalid HEAD in its RepositoryInfo, garbage instead of pkt-lines,
or silence. The target is a real node process with a short `replication_timeout`.
Every failure is a status a caller can act on, with no absolute path and no exception
class in its message; the node keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

from common.auth import bearer_metadata
from gitraft.v1 import repository_pb2 as pb
from gitraft.v1 import repository_pb2_grpc, shared_pb2
from node.replication_source import MAX_CHANNELS, SourceRepository, _shared_channel
from tests.integration.test_node_error_hygiene import assert_clean
from tests.integration.tuned_node import TunedNode

REPLICATION_TIMEOUT = 2.0
CALL_TIMEOUT = 60.0


def pkt(text: str) -> bytes:
    return f"{len(text.encode()) + 4:04x}".encode() + text.encode()


class HostileSource(repository_pb2_grpc.RepositoryServiceServicer):
    """Says every repository exists and has refs; its UploadPackSession misbehaves as `mode` says."""

    def __init__(self) -> None:
        self.mode = "silent"
        self.sessions = 0

    async def RepositoryExists(self, request: Any, context: Any) -> pb.RepositoryExistsResponse:
        return pb.RepositoryExistsResponse(exists=True)

    async def RepositoryInfo(self, request: Any, context: Any) -> pb.RepositoryInfoResponse:
        head = {"bad-head": "refs/heads/bad..name", "head-outside-refs": "FETCH_HEAD"}.get(self.mode)
        return pb.RepositoryInfoResponse(ref_count=1, default_branch=head or "refs/heads/main")

    async def UploadPackSession(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        self.sessions += 1
        if self.mode == "silent":
            await asyncio.Event().wait()
        answers = {
            "garbage": b"zzzz not a pkt-line",
            "hex-prefix": b"0x1f not a pkt-line either",  # int(_, 16) reads 31
            "signed-length": b"-001 nor this",
            "short": b"00",  # then the end: no pkt-line at all
        }
        if self.mode in answers:
            yield pb.UploadPackSessionResponse(stdout=answers[self.mode])
            return
        raise AssertionError(f"no session expected in mode {self.mode}")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TunedNode]:
    workdir = tmp_path_factory.mktemp("replication-errors")
    node = TunedNode(
        "node-t", workdir, secrets.token_hex(16), extra_toml=f"replication_timeout = {REPLICATION_TIMEOUT}\n"
    )
    with node.start() as started:
        yield started


@pytest.fixture
async def source() -> AsyncIterator[tuple[HostileSource, str]]:
    servicer = HostileSource()
    server = grpc.aio.server()
    repository_pb2_grpc.add_RepositoryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def replicate(target: TunedNode, address: str, relative_path: str) -> grpc.aio.AioRpcError:
    """The error ReplicateRepository ends with (the test fails if it succeeds)."""
    request = pb.ReplicateRepositoryRequest(
        repository=shared_pb2.Repository(relative_path=relative_path),
        source=shared_pb2.Repository(relative_path="any.git"),
        source_node=shared_pb2.NodeAddress(name="hostile", address=address, token="t"),
    )
    async with grpc.aio.insecure_channel(target.address) as channel:
        stub = repository_pb2_grpc.RepositoryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ReplicateRepository(
                request, metadata=bearer_metadata(target.token), timeout=CALL_TIMEOUT
            )
        exists = await stub.RepositoryExists(
            pb.RepositoryExistsRequest(repository=shared_pb2.Repository(relative_path=relative_path)),
            metadata=bearer_metadata(target.token),
            timeout=CALL_TIMEOUT,
        )
    assert not exists.exists  # nothing half-made is left behind
    return info.value


@pytest.mark.parametrize(
    "mode", ["bad-head", "head-outside-refs", "garbage", "hex-prefix", "signed-length", "short"]
)
async def test_a_bad_answer_from_the_source_is_failed_precondition(
    target: TunedNode, source: tuple[HostileSource, str], mode: str
) -> None:
    servicer, address = source
    servicer.mode = mode
    error = await replicate(target, address, f"bad/{mode}.git")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, (error.code(), error.details())
    assert_clean(error.details() or "")


async def test_a_silent_source_hits_the_nodes_own_deadline(
    target: TunedNode, source: tuple[HostileSource, str]
) -> None:
    """The caller's deadline (CALL_TIMEOUT) is far away: the node gives up by itself."""
    servicer, address = source
    servicer.mode = "silent"
    error = await replicate(target, address, "silent/one.git")
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (error.code(), error.details())
    assert "replication" in (error.details() or ""), error.details()
    assert_clean(error.details() or "")
    assert servicer.sessions >= 1


async def test_a_target_path_that_is_not_a_repository_is_named_without_the_storage_root(
    target: TunedNode, source: tuple[HostileSource, str]
) -> None:
    _, address = source
    os.makedirs(target.storage_path / "squat" / "dir.git")
    error = await replicate(target, address, "squat/dir.git")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    assert "squat/dir.git" in (error.details() or "")
    assert str(target.storage_path) not in (error.details() or "")
    assert_clean(error.details() or "")


async def test_a_source_channel_in_use_outlives_its_eviction(source: tuple[HostileSource, str]) -> None:
    """The node keeps MAX_CHANNELS channels to source nodes; one pushed out by newer
    addresses (peers that moved: new pod addresses) while a replication still uses it
    stays open for that replication (it was closed under it: 'Channel is closed')."""
    servicer, address = source
    servicer.mode = "silent"  # RepositoryInfo answers; no session is opened here
    async with SourceRepository(address, "t", shared_pb2.Repository(relative_path="any.git")) as repository:
        for port in range(1, MAX_CHANNELS + 1):  # other sources seen meanwhile (never dialled)
            _shared_channel(f"127.0.0.1:{port}")
        info = await repository.info()
    assert info.default_branch == "refs/heads/main"
