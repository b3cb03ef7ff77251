"""Where the git HTTP gateway sends its requests: the Upstream interface, and its gRPC form.

An `Upstream` opens one call per HTTP request:
- `info_refs(service, relative_path, git_protocol)`: the ref (or, for protocol v2, the
  capability) advertisement;
- `post(service, relative_path, git_protocol, body)`: the request body as an async
  iterator of byte chunks, pulled as upstream consumes it.
Both return an `UpstreamCall`: `await call.read()` gives the next chunk of the answer
(bytes, possibly empty) or None at its end, and raises `UpstreamError(code, details)`
when upstream refuses or fails (`code` a grpc.StatusCode, `details` safe to show a
client); `await call.close()` ends the call early (upstream is cancelled, which kills
git on the node) and does nothing after the end.

`GrpcUpstream` speaks SmartHTTPService over a gRPC channel with a bearer token (a node,
or a proxy, behind the standalone `gitraft gateway`). The gateway inside a proxy calls
that proxy's coordinator in-process instead (cluster.gateway.local.LocalUpstream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import grpc

from common.auth import bearer_metadata
from common.logs import CORRELATION_METADATA_KEY, correlation_id, new_correlation_id
from common.tls import ClientTls, aio_channel
from gitraft.v1 import shared_pb2, smarthttp_pb2, smarthttp_pb2_grpc

UPLOAD_PACK = "git-upload-pack"
RECEIVE_PACK = "git-receive-pack"

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]
POST_REQUESTS: dict[str, Any] = {
    UPLOAD_PACK: smarthttp_pb2.PostUploadPackRequest,
    RECEIVE_PACK: smarthttp_pb2.PostReceivePackRequest,
}


class UpstreamError(Exception):
    """Upstream refused or failed the call: a gRPC status code and a client-safe message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class UpstreamCall(Protocol):
    async def read(self) -> bytes | None: ...

    async def close(self) -> None: ...


class Upstream(Protocol):
    """What the gateway needs of its upstream (see the module doc)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def info_refs(self, service: str, relative_path: str, git_protocol: str) -> UpstreamCall: ...

    def post(
        self, service: str, relative_path: str, git_protocol: str, body: AsyncIterator[bytes]
    ) -> UpstreamCall: ...


def info_refs_request(relative_path: str, git_protocol: str) -> smarthttp_pb2.InfoRefsRequest:
    return smarthttp_pb2.InfoRefsRequest(
        repository=shared_pb2.Repository(relative_path=relative_path), git_protocol=git_protocol
    )


def post_request(service: str, relative_path: str, git_protocol: str) -> Any:
    """The first message of a Post* call: the repository and protocol, no data."""
    return POST_REQUESTS[service](
        repository=shared_pb2.Repository(relative_path=relative_path), git_protocol=git_protocol
    )


class GrpcUpstream:
    """SmartHTTPService at `address`, called with `token` (and the request's correlation id)."""

    def __init__(
        self,
        address: str,
        token: str,
        *,
        tls: ClientTls | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.name = address
        self._token = token
        self._tls = tls
        self._options = [*GRPC_OPTIONS, *options]
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    async def start(self) -> None:
        self._channel = aio_channel(self.name, self._options, self._tls)
        self._stub = smarthttp_pb2_grpc.SmartHTTPServiceStub(self._channel)

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def info_refs(self, service: str, relative_path: str, git_protocol: str) -> UpstreamCall:
        method = self._stub.InfoRefsUploadPack if service == UPLOAD_PACK else self._stub.InfoRefsReceivePack
        request = info_refs_request(relative_path, git_protocol)
        return _GrpcCall(method(request, metadata=self._metadata()))

    def post(
        self, service: str, relative_path: str, git_protocol: str, body: AsyncIterator[bytes]
    ) -> UpstreamCall:
        method = self._stub.PostUploadPack if service == UPLOAD_PACK else self._stub.PostReceivePack
        first = post_request(service, relative_path, git_protocol)
        return _GrpcCall(method(_messages(first, body), metadata=self._metadata()))

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (
            *bearer_metadata(self._token),
            (CORRELATION_METADATA_KEY, correlation_id.get() or new_correlation_id()),
        )


class _GrpcCall:
    def __init__(self, call: Any) -> None:
        self._call = call

    async def read(self) -> bytes | None:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise UpstreamError(exc.code(), exc.details() or str(exc.code())) from exc
        return None if message is grpc.aio.EOF else bytes(message.data)

    async def close(self) -> None:
        if not self._call.done():
            self._call.cancel()


async def _messages(first: Any, body: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """`first` (no data), then one message of the same type per body chunk."""
    yield first
    cls = type(first)
    async for chunk in body:
        yield cls(data=chunk)
