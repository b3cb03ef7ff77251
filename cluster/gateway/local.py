"""The gateway inside a proxy: SmartHTTPService calls go to the proxy's coordinator
in-process, not through a loopback gRPC call to the same process.

Same contract as the gRPC path (cluster.gateway.upstream), with less work per request
(no HTTP/2 framing, no gRPC server and client machinery, one serialisation less per
message; measured by bench/proxy_bench.py):
- the coordinator routes, holds barriers and write intents, forwards to the node and
  records its metrics exactly as for a gRPC caller (`Coordinator.stream`, with no
  deadline, as the gateway sets none on its gRPC calls);
- its errors become UpstreamError as ErrorInterceptor would turn them into statuses: our
  own (GitraftError, a node's NodeError) with their code and `client_message` text,
  anything else INTERNAL with only the correlation id (detail in the log);
- the request body is pulled by the coordinator as the node consumes it; `close()`
  closes the coordinator's stream, which cancels the node's call (kills git there) and
  settles a write intent as a cancelled gRPC call would;
- authentication is the gateway's (the HTTP token is one of the proxy's client tokens,
  the same set its gRPC interceptor checks), the correlation id the gateway's own.
- a protocol v2 upload-pack advertisement (capabilities only) is served from
  cluster.gateway.capabilities while the proxy's local metadata knows the repository.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc

from cluster.gateway.capabilities import CapabilityCache, is_v2
from cluster.gateway.upstream import (
    UPLOAD_PACK,
    UpstreamCall,
    UpstreamError,
    info_refs_request,
    post_request,
)
from cluster.metadata.api import MetadataStore
from cluster.proxy.router import MethodInfo, Registry
from common.errors import GitraftError, client_message
from common.logs import correlation_id

log = logging.getLogger(__name__)

SERVICE = "/gitraft.v1.SmartHTTPService/"


class Streaming(Protocol):
    """What LocalUpstream needs of cluster.proxy.coordinator.Coordinator."""

    registry: Registry
    store: MetadataStore

    def stream(self, info: MethodInfo, request: Any, context: Any) -> AsyncIterator[bytes]: ...


class LocalUpstream:
    """SmartHTTPService served by `coordinator` in this process."""

    name = "in-process"

    def __init__(self, coordinator: Streaming, capabilities: CapabilityCache | None = None) -> None:
        self._coordinator = coordinator
        self.capabilities = capabilities if capabilities is not None else CapabilityCache()
        self._methods: dict[str, MethodInfo] = {}
        for name in ("InfoRefsUploadPack", "InfoRefsReceivePack", "PostUploadPack", "PostReceivePack"):
            info = coordinator.registry.get(SERVICE + name)
            if info is None:
                raise LookupError(f"the registry has no {SERVICE + name}")
            self._methods[name] = info

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to close."""

    def info_refs(self, service: str, relative_path: str, git_protocol: str) -> UpstreamCall:
        info = self._methods["InfoRefsUploadPack" if service == UPLOAD_PACK else "InfoRefsReceivePack"]
        request = info_refs_request(relative_path, git_protocol).SerializeToString()
        if service == UPLOAD_PACK and is_v2(git_protocol):
            return _CapabilityCall(self, relative_path, git_protocol, info, request)
        return _LocalCall(self._coordinator.stream(info, request, None), info)

    def open(self, info: MethodInfo, request: bytes) -> _LocalCall:
        return _LocalCall(self._coordinator.stream(info, request, None), info)

    async def known_id(self, relative_path: str) -> str | None:
        """The repository's id in this proxy's applied metadata (no barrier), if any."""
        repo = await self._coordinator.store.get_repository(relative_path)
        return None if repo is None else repo.repository_id

    def post(
        self, service: str, relative_path: str, git_protocol: str, body: AsyncIterator[bytes]
    ) -> UpstreamCall:
        info = self._methods["PostUploadPack" if service == UPLOAD_PACK else "PostReceivePack"]
        first = post_request(service, relative_path, git_protocol)
        requests = _serialised(first.SerializeToString(), type(first), body)
        return _LocalCall(self._coordinator.stream(info, requests, None), info)


class _LocalCall:
    def __init__(self, responses: AsyncIterator[bytes], info: MethodInfo) -> None:
        self._responses = responses
        self._info = info
        self._ended = False

    async def read(self) -> bytes | None:
        if self._ended:
            return None
        try:
            raw = await anext(self._responses)
        except StopAsyncIteration:
            self._ended = True
            return None
        except GitraftError as exc:
            self._ended = True
            message = str(exc)
            safe = client_message(message)
            if safe != message:
                log.info("error message shortened for the client", extra={"error": message})
            raise UpstreamError(exc.code, safe) from exc
        except Exception as exc:
            self._ended = True
            log.error("unhandled error in rpc", exc_info=exc, extra={"method": self._info.path})
            cid = correlation_id.get() or "none"
            raise UpstreamError(grpc.StatusCode.INTERNAL, f"internal error (correlation id {cid})") from exc
        return bytes(self._info.response_class.FromString(raw).data)  # type: ignore[attr-defined]

    async def close(self) -> None:
        self._ended = True
        close = getattr(self._responses, "aclose", None)
        if close is not None:
            await close()


class _CapabilityCall:
    """A v2 upload-pack advertisement: from the cache when the repository is known here
    under the id it was kept for, else from the coordinator (then kept)."""

    def __init__(
        self, upstream: LocalUpstream, relative_path: str, git_protocol: str, info: MethodInfo, request: bytes
    ) -> None:
        self._upstream = upstream
        self._path = relative_path
        self._protocol = git_protocol
        self._info = info
        self._request = request
        self._live: _LocalCall | None = None
        self._written: list[bytes] = []
        self._ended = False

    async def read(self) -> bytes | None:
        if self._ended:
            return None
        cache = self._upstream.capabilities
        if self._live is None:
            known = await self._upstream.known_id(self._path)
            cached = cache.get((known, self._protocol)) if known is not None else None
            if cached is not None:
                self._ended = True
                return cached
            self._live = self._upstream.open(self._info, self._request)
        chunk = await self._live.read()
        if chunk is not None:
            self._written.append(chunk)
            return chunk
        self._ended = True
        known = await self._upstream.known_id(self._path)  # applied by the call's barrier
        if known is not None:
            cache.put((known, self._protocol), b"".join(self._written))
        return None

    async def close(self) -> None:
        self._ended = True
        if self._live is not None:
            await self._live.close()


async def _serialised(first: bytes, cls: Any, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The request stream as the coordinator takes it from gRPC: serialised messages,
    `first` then one per body chunk."""
    yield first
    async for chunk in body:
        yield cls(data=chunk).SerializeToString()
