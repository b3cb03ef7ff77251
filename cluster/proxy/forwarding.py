"""Bytes-level forwarding of one call to one node, and the request plumbing around it.

- `parse` / `target_path` / `rewrite`: only the first request message is parsed, to read
  the client-facing repository and point it at a replica (storage name + replica path);
  everything else travels as raw bytes, responses are never re-serialised.
- `forward_unary` / `forward_stream`: one call to a node with the node token and the
  correlation id (NodePool.metadata), the caller's timeout, cancellation passed on, and
  the node's error as `NodeError` (same status code and message for the client).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import message

from cluster.metadata.api import Repository
from cluster.proxy.nodes import NodePool
from cluster.proxy.router import MethodInfo
from common.errors import GitraftError, InvalidArgumentError, UnavailableError
from common.paths import validate_relative_path
from gitraft.v1 import repository_pb2, shared_pb2

# Bound on a checksum read.
CHECKSUM_TIMEOUT = 10.0


class NodeError(GitraftError):
    """A node answered with an error status: relayed to the client unchanged."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


def node_error(exc: grpc.aio.AioRpcError) -> NodeError:
    return NodeError(exc.code(), exc.details() or str(exc.code()))


def parse(info: MethodInfo, data: bytes) -> message.Message:
    """The (first) request message; InvalidArgumentError when it does not parse."""
    try:
        return info.request_class.FromString(data)
    except message.DecodeError as exc:
        raise InvalidArgumentError(f"malformed {info.request_class.__name__}: {exc}") from exc


def refuse_node_internal(info: MethodInfo) -> None:
    """RPCs naming a second repository (node-internal replication) are not served: the
    proxy could not rewrite it to a replica, and replication is the proxy's own job.
    Nor are RPCs marked node_internal (e.g. ExportRepository)."""
    if info.node_internal:
        raise InvalidArgumentError(f"{info.name} is node-internal, not served by the proxy")
    if info.additional_field:
        raise InvalidArgumentError(
            f"{info.name} names a second repository ({info.additional_field!r}): node-internal, "
            "not served by the proxy"
        )


def target_path(info: MethodInfo, request: message.Message) -> str:
    """The client-facing relative path in the target field, validated and normalised."""
    repository = getattr(request, info.target_field)
    return validate_relative_path(str(repository.relative_path))


def replica_of(repo: Repository, storage: str) -> shared_pb2.Repository:
    return shared_pb2.Repository(storage_name=storage, relative_path=repo.replica_path)


def rewrite(info: MethodInfo, request: message.Message, repo: Repository, storage: str) -> bytes:
    """The request, serialised, with its target repository pointing at `storage`'s replica."""
    getattr(request, info.target_field).CopyFrom(replica_of(repo, storage))
    return request.SerializeToString()


def _checksum_stub(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(
        "/gitraft.v1.RepositoryService/RepositoryChecksum",
        request_serializer=repository_pb2.RepositoryChecksumRequest.SerializeToString,
        response_deserializer=repository_pb2.RepositoryChecksumResponse.FromString,
    )


def call_timeout(context: Any, limit: float | None) -> float | None:
    remaining = time_remaining(context)
    if remaining is None or limit is None:
        return limit if remaining is None else remaining
    return min(remaining, limit)


async def forward_unary(
    nodes: NodePool, info: MethodInfo, storage: str, request: bytes, deadline_in: float | None
) -> bytes:
    """Send one unary request (bytes) to `storage` with `deadline_in` seconds (None: no
    deadline); the response bytes, or NodeError."""
    await connect(nodes, storage)
    channel: Any = nodes.channel(storage)
    call: Any = channel.unary_unary(info.path)(request, metadata=nodes.metadata(), timeout=deadline_in)
    try:
        return bytes(await call)
    except grpc.aio.AioRpcError as exc:
        raise node_error(exc) from exc
    finally:
        if not call.done():
            call.cancel()


async def forward_stream(
    nodes: NodePool,
    info: MethodInfo,
    storage: str,
    first: bytes,
    rest: AsyncIterator[bytes] | None,
    deadline_in: float | None,
) -> AsyncIterator[bytes]:
    """Relay a response-streaming call to `storage`: `first` then `rest` up, each response
    message down as it comes; NodeError on the node's error. Closing the iterator (or a
    cancelled consumer) cancels the node's call."""
    await connect(nodes, storage)
    channel: Any = nodes.channel(storage)
    call: Any
    if info.client_streaming:
        call = channel.stream_stream(info.path)(
            chain(first, rest), metadata=nodes.metadata(), timeout=deadline_in
        )
    else:
        call = channel.unary_stream(info.path)(first, metadata=nodes.metadata(), timeout=deadline_in)
    try:
        async for chunk in call:
            yield bytes(chunk)
    except grpc.aio.AioRpcError as exc:
        raise node_error(exc) from exc
    finally:
        if not call.done():
            call.cancel()


async def connect(nodes: NodePool, storage: str) -> None:
    """NodePool.connect, failing as a NodeError(UNAVAILABLE) like the call itself would."""
    try:
        await nodes.connect(storage)
    except UnavailableError as exc:
        raise NodeError(grpc.StatusCode.UNAVAILABLE, str(exc)) from exc


async def read_checksum(nodes: NodePool, repo: Repository, storage: str) -> str:
    """RepositoryChecksum of `storage`'s replica of `repo` (NodeError on failure)."""
    await connect(nodes, storage)
    stub: Any = _checksum_stub(nodes.channel(storage))
    request = repository_pb2.RepositoryChecksumRequest(repository=replica_of(repo, storage))
    try:
        response = await stub(request, metadata=nodes.metadata(), timeout=CHECKSUM_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        raise node_error(exc) from exc
    return str(response.checksum)


class RequestLog:
    """A read's client request stream (`rest`), kept so that a read whose node failed
    before answering can be replayed on another replica.

    `attempt()` gives one attempt's iterator: the first one pulls from `rest`, recording
    each message (up to `cap` bytes in all); a later one replays the record. A replay is
    possible (`replayable`) only when nothing was pulled yet, or when `rest` ended and
    every message was recorded: a stream still open is never read by two attempts."""

    def __init__(self, rest: AsyncIterator[bytes], cap: int = 1 << 20) -> None:
        self._rest = rest
        self._cap = cap
        self._items: list[bytes] = []
        self._size = 0
        self._pulled = False
        self._ended = False

    @property
    def replayable(self) -> bool:
        return not self._pulled or (self._ended and self._size <= self._cap)

    async def attempt(self) -> AsyncIterator[bytes]:
        if self._pulled:
            for item in self._items:
                yield item
            return
        self._pulled = True
        async for item in self._rest:
            self._size += len(item)
            if self._size <= self._cap:
                self._items.append(item)
            yield item
        self._ended = True


def time_remaining(context: Any) -> float | None:
    if context is None:
        return None
    remaining = context.time_remaining()
    return None if remaining is None else max(float(remaining), 0.0)


def code_of(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, GitraftError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    if isinstance(exc, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.INTERNAL


async def first_message(requests: AsyncIterator[bytes]) -> bytes:
    async for item in requests:
        return item
    raise InvalidArgumentError("empty request stream")


async def chain(first: bytes, rest: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
    yield first
    if rest is not None:
        async for item in rest:
            yield item
