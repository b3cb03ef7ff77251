"""Malformed requests to every node RPC: a clean status, never a crash or a hang.

Each RPC of the node's services gets bytes that are not its request message (through a
raw channel with identity serializers), and requests whose fields are missing or too
large. Every call must end within a bound with a status a client can act on, and the node
must still answer a normal RPC afterwards.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory

from cluster.testing import NodeProcess
from common.auth import bearer_metadata
from gitraft.v1 import (
    repository_pb2,
    repository_pb2_grpc,
    server_pb2,
    server_pb2_grpc,
    shared_pb2,
    smarthttp_pb2,
)
from node.server import SERVICE_NAMES
from tests.integration.conftest import NewRepo, git_cli
from tests.integration.gateway_helpers import refs_of

CALL_TIMEOUT = 10.0
# Bytes no protobuf parser accepts: field 1 with wire type 7 (invalid), then junk.
GARBAGE = [b"\x0f\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", bytes(random.Random(7).randbytes(64)) + b"\x0f"]


def node_methods() -> list[tuple[str, bool, bool]]:
    """(gRPC path, client streaming, server streaming) of every node RPC."""
    pool = descriptor_pool.Default()
    methods = []
    for name in SERVICE_NAMES:
        service = pool.FindServiceByName(name)
        for method in service.methods:
            methods.append(
                (f"/{service.full_name}/{method.name}", method.client_streaming, method.server_streaming)
            )
    return methods


METHODS = node_methods()


@pytest.fixture
async def channel(node: NodeProcess) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(node.address) as ch:
        yield ch


async def raw_call(
    channel: grpc.aio.Channel,
    path: str,
    client_streaming: bool,
    server_streaming: bool,
    body: bytes,
    token: str,
) -> grpc.StatusCode:
    """Send `body` as the (only) request message of `path`; the status it ends with."""
    md = bearer_metadata(token)
    kind = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[(client_streaming, server_streaming)]
    multi: Any = kind(path, request_serializer=None, response_deserializer=None)

    async def one() -> AsyncIterator[bytes]:
        yield body

    request: Any = one() if client_streaming else body
    call = multi(request, metadata=md, timeout=CALL_TIMEOUT)
    try:
        if server_streaming:
            async for _ in call:
                pass
        else:
            await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def assert_still_serving(channel: grpc.aio.Channel, token: str) -> None:
    stub = server_pb2_grpc.ServerServiceStub(channel)
    info = await stub.ServerInfo(server_pb2.ServerInfoRequest(), metadata=bearer_metadata(token), timeout=10)
    assert info.storage_name


@pytest.mark.parametrize(
    ("path", "client_streaming", "server_streaming"), METHODS, ids=[m[0] for m in METHODS]
)
async def test_garbage_request_bytes_are_invalid_argument(
    channel: grpc.aio.Channel, node: NodeProcess, path: str, client_streaming: bool, server_streaming: bool
) -> None:
    for body in GARBAGE:
        code = await raw_call(channel, path, client_streaming, server_streaming, body, node.token)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (path, body, code)
    await assert_still_serving(channel, node.token)


def request_class(path: str) -> Any:
    """The request message class of the RPC at gRPC `path`."""
    service, method = path.strip("/").split("/")
    descriptor = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(method)
    return message_factory.GetMessageClass(descriptor.input_type)


# RPCs whose empty request is a valid question about the whole server.
EMPTY_IS_VALID = {"/gitraft.v1.ServerService/ServerInfo", "/gitraft.v1.ServerService/ListStorageRepositories"}


@pytest.mark.parametrize(
    ("path", "client_streaming", "server_streaming"), METHODS, ids=[m[0] for m in METHODS]
)
async def test_missing_fields_are_invalid_argument(
    channel: grpc.aio.Channel, node: NodeProcess, path: str, client_streaming: bool, server_streaming: bool
) -> None:
    # b"" is the serialized empty message: every field missing.
    code = await raw_call(channel, path, client_streaming, server_streaming, b"", node.token)
    expected = grpc.StatusCode.OK if path in EMPTY_IS_VALID else grpc.StatusCode.INVALID_ARGUMENT
    assert code == expected


@pytest.mark.parametrize(
    ("path", "client_streaming", "server_streaming"),
    [m for m in METHODS if "repository" in request_class(m[0]).DESCRIPTOR.fields_by_name],
    ids=[m[0] for m in METHODS if "repository" in request_class(m[0]).DESCRIPTOR.fields_by_name],
)
async def test_oversized_repository_path_is_invalid_argument(
    channel: grpc.aio.Channel, node: NodeProcess, path: str, client_streaming: bool, server_streaming: bool
) -> None:
    message = request_class(path)(repository=shared_pb2.Repository(relative_path="a/" * 100_000 + "r.git"))
    body = message.SerializeToString()
    code = await raw_call(channel, path, client_streaming, server_streaming, body, node.token)
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_empty_request_streams_are_invalid_argument(
    channel: grpc.aio.Channel, node: NodeProcess
) -> None:
    for path, client_streaming, _ in METHODS:
        if not client_streaming:
            continue
        multi: Any = channel.stream_stream(path, request_serializer=None, response_deserializer=None)
        call = multi(iter(()), metadata=bearer_metadata(node.token), timeout=CALL_TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
    await assert_still_serving(channel, node.token)


async def test_a_message_above_the_size_limit_is_refused_and_the_node_serves_on(
    channel: grpc.aio.Channel, node: NodeProcess
) -> None:
    stub = repository_pb2_grpc.RepositoryServiceStub(channel)
    huge = repository_pb2.RepositoryExistsRequest(
        repository=shared_pb2.Repository(relative_path="x" * (17 << 20))
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.RepositoryExists(huge, metadata=bearer_metadata(node.token), timeout=CALL_TIMEOUT)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await assert_still_serving(channel, node.token)


async def test_garbage_after_a_valid_first_message_changes_nothing(
    channel: grpc.aio.Channel, node: NodeProcess, new_repo: NewRepo, work_tree: Path
) -> None:
    """The stdin pump swallows the error it meets; the stream still ends INVALID_ARGUMENT."""
    repo, path = new_repo()
    git_cli("push", "-q", str(path), "main", cwd=work_tree)
    before = refs_of(path)
    first = smarthttp_pb2.PostReceivePackRequest(repository=repo).SerializeToString()
    multi: Any = channel.stream_stream(
        "/gitraft.v1.SmartHTTPService/PostReceivePack", request_serializer=None, response_deserializer=None
    )
    call = multi(iter([first, GARBAGE[0]]), metadata=bearer_metadata(node.token), timeout=CALL_TIMEOUT)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refs_of(path) == before
    await assert_still_serving(channel, node.token)
