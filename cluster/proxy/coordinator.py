"""Coordination: one generic gRPC handler that serves every forwarded RPC, bytes in and out.

`Coordinator.handler()` is a `grpc.GenericRpcHandler`. For each call it parses only the
first request message (to read and rewrite the target repository or storage), decides
a `Plan` (`Coordinator.plan`: the one routing decision for every streaming shape) and
carries it out, forwarding to the chosen node(s). Responses pass through as raw bytes;
streams are relayed message by message, never buffered whole. The client's deadline,
cancellation and correlation id go to the node with the node token; a node's error
reaches the client with the same status code and message (`NodeError`).

Plans (see DESIGN.md "Paths through the system"):
- WRITE, a mutator: fenced, under a write intent (cluster.proxy.writes).
- READ, an accessor: one healthy up-to-date replica, tried on another when nothing was
  relayed; MAINTAIN, a maintenance RPC (unary only): every healthy assigned replica, no
  generation change (cluster.proxy.reads).
- CREATE / REMOVE: repository creation and removal (cluster.proxy.repositories).
- NODE: storage scope goes to the named storage, any server-scoped method but
  ServerInfo to one healthy node; the request unchanged.
- LOCAL: ServerInfo is answered by the proxy itself (server_version names the proxy,
  storage_name is empty).
RPCs whose request names a second repository (`additional_repository`: node-internal
ReplicateRepository) are refused with INVALID_ARGUMENT. The bytes-level calls to nodes
are in cluster.proxy.forwarding.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import grpc
from google.protobuf import message

from cluster.metadata.api import MetadataStore
from cluster.observability.metrics import ProxyMetrics
from cluster.proxy.barrier import SharedBarrier
from cluster.proxy.forwarding import (
    NodeError,
    code_of,
    first_message,
    parse,
    refuse_node_internal,
    target_path,
)
from cluster.proxy.nodes import NodePool
from cluster.proxy.reads import ReadPath
from cluster.proxy.repositories import CREATE, REMOVE, Repositories
from cluster.proxy.router import MethodInfo, OpType, Registry, Scope, route_storage
from cluster.proxy.writes import OpenIntent, WritePath
from common.errors import InvalidArgumentError, UnavailableError
from gitraft.v1 import server_pb2

log = logging.getLogger(__name__)

PROXY_VERSION = "gitraft-proxy/0.1.0"
SERVER_INFO = "/gitraft.v1.ServerService/ServerInfo"
# Re-exported for the modules that use the coordinator (tests).
__all__ = ["Coordinator", "NodeError", "OpenIntent", "Plan", "PlanKind"]


class PlanKind(StrEnum):
    """How a call is carried out (see module doc)."""

    LOCAL = "local"
    NODE = "node"
    CREATE = "create"
    REMOVE = "remove"
    WRITE = "write"
    MAINTAIN = "maintain"
    READ = "read"


# A repository-scoped call's plan: by method for creation and removal, else by op type.
_BY_OP = {
    OpType.MUTATOR: PlanKind.WRITE,
    OpType.ACCESSOR: PlanKind.READ,
    OpType.MAINTENANCE: PlanKind.MAINTAIN,
}
_BY_METHOD = {CREATE: PlanKind.CREATE, REMOVE: PlanKind.REMOVE}


@dataclass(frozen=True)
class Plan:
    """One call's routing decision: `storage` for NODE, the client's repository `path`
    for the repository-scoped kinds."""

    kind: PlanKind
    storage: str = ""
    path: str = ""


class Coordinator(ReadPath, WritePath):
    """Routes and forwards every non-local RPC for one proxy."""

    def __init__(
        self,
        *,
        proxy_name: str,
        store: MetadataStore,
        registry: Registry,
        nodes: NodePool,
        metrics: ProxyMetrics,
        write_intent_timeout: float,
        read_first_response_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        on_jobs_scheduled: Callable[[], None] = lambda: None,
        replication_factor: int = 3,
        create_on_push: bool = False,
    ) -> None:
        """`replication_factor` and `create_on_push` configure creation
        (`self.repositories`, cluster.proxy.repositories)."""
        self.read_first_response_timeout = read_first_response_timeout
        self.proxy_name = proxy_name
        self.store = store
        self.registry = registry
        self.nodes = nodes
        self.metrics = metrics
        self.write_intent_timeout = write_intent_timeout
        self.clock = clock
        self.on_jobs_scheduled = on_jobs_scheduled
        self.barrier = SharedBarrier(store.barrier)
        self.repositories = Repositories(self, replication_factor, create_on_push)

    def handler(self) -> grpc.GenericRpcHandler:
        return _GenericHandler(self)

    # --- entry points, one per streaming shape --------------------------------------

    async def unary(self, info: MethodInfo, request: bytes, context: Any) -> bytes:
        started = time.monotonic()
        code = grpc.StatusCode.OK
        try:
            return await self._unary(info, parse(info, request), context)
        except BaseException as exc:
            code = code_of(exc)
            raise
        finally:
            self._observe(info, code, started)

    async def stream(self, info: MethodInfo, request: Any, context: Any) -> AsyncIterator[bytes]:
        """Response-streaming calls; `request` is bytes or the client's request iterator."""
        started = time.monotonic()
        code = grpc.StatusCode.OK
        try:
            if info.client_streaming:
                first = await first_message(request)
                rest: AsyncIterator[bytes] | None = request
            else:
                first, rest = request, None
            async for chunk in self._stream(info, parse(info, first), rest, context):
                yield chunk
        except BaseException as exc:
            code = code_of(exc)
            raise
        finally:
            self._observe(info, code, started)

    async def stream_unary(self, info: MethodInfo, requests: AsyncIterator[bytes], context: Any) -> bytes:
        """Client-streaming, unary response: relayed like a stream, answered by its only message."""
        out = [chunk async for chunk in self.stream(info, requests, context)]
        if len(out) != 1:
            raise NodeError(grpc.StatusCode.INTERNAL, f"expected one response, got {len(out)}")
        return out[0]

    # --- routing -----------------------------------------------------------------

    async def plan(self, info: MethodInfo, request: message.Message) -> Plan:
        """The routing decision for a call whose first request message is `request`.

        InvalidArgumentError for a bad repository path or a second repository; NODE
        plans name a known storage (NotFoundError otherwise) or a healthy one
        (UnavailableError when there is none)."""
        if info.scope is Scope.STORAGE:
            name = str(getattr(request, info.storage_field))
            known = [s.name for s in await self.store.storages()]
            return Plan(PlanKind.NODE, storage=route_storage(name, known).storage)
        if info.scope is Scope.SERVER:
            if info.path == SERVER_INFO:
                return Plan(PlanKind.LOCAL)
            return Plan(PlanKind.NODE, storage=await self._any_healthy_storage())
        path = target_path(info, request)
        refuse_node_internal(info)
        return Plan(_BY_METHOD.get(info.path, _BY_OP[info.op]), path=path)

    async def _unary(self, info: MethodInfo, request: message.Message, context: Any) -> bytes:
        plan = await self.plan(info, request)
        match plan.kind:
            case PlanKind.LOCAL:
                return server_pb2.ServerInfoResponse(server_version=PROXY_VERSION).SerializeToString()
            case PlanKind.NODE:
                return await self.call_unary(info, plan.storage, request.SerializeToString(), context)
            case PlanKind.CREATE:
                return await self.repositories.create(plan.path, request, info, context)
            case PlanKind.REMOVE:
                return await self.repositories.remove(plan.path, info, context)
            case PlanKind.WRITE:
                return await self.mutate(info, request, plan.path, context)
            case PlanKind.MAINTAIN:
                return await self.maintain(info, request, plan.path, context)
            case PlanKind.READ:
                return await self.read_unary(info, request, plan.path, context)

    async def _stream(
        self, info: MethodInfo, request: message.Message, rest: AsyncIterator[bytes] | None, context: Any
    ) -> AsyncIterator[bytes]:
        plan = await self.plan(info, request)
        if plan.kind is PlanKind.NODE:
            responses = self.call_stream(info, plan.storage, request.SerializeToString(), rest, context)
        elif plan.kind is PlanKind.READ:
            responses = self.read_stream(info, request, plan.path, rest, context)
        elif plan.kind is PlanKind.WRITE:
            responses = self.write_stream(info, request, plan.path, rest, context)
        else:
            raise InvalidArgumentError(f"streaming {info.op} rpc is not supported: {info.path!r}")
        async for chunk in responses:
            yield chunk

    async def _any_healthy_storage(self) -> str:
        healthy = sorted(await self.store.healthy_storages(self.clock()))
        if not healthy:
            raise UnavailableError("no healthy storage")
        return random.choice(healthy)

    def _observe(self, info: MethodInfo, code: grpc.StatusCode, started: float) -> None:
        log.info("rpc finished", extra={"method": info.path, "route": info.route_label, "code": code.name})
        self.metrics.rpcs.labels(method=info.path, route=info.route_label, code=code.name).inc()
        self.metrics.rpc_duration.labels(method=info.path, route=info.route_label).observe(
            time.monotonic() - started
        )


class _GenericHandler(grpc.GenericRpcHandler):
    """Serves every forwarded method of the registry; None for anything else."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._c = coordinator

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        info = self._c.registry.get(handler_call_details.method or "")
        if info is None or info.local:
            return None
        c = self._c
        if info.server_streaming:

            async def stream(request: Any, context: Any) -> AsyncIterator[bytes]:
                async for chunk in c.stream(info, request, context):
                    yield chunk

            if info.client_streaming:
                return grpc.stream_stream_rpc_method_handler(stream)
            return grpc.unary_stream_rpc_method_handler(stream)
        if info.client_streaming:

            async def stream_unary(requests: Any, context: Any) -> bytes:
                return await c.stream_unary(info, requests, context)

            return grpc.stream_unary_rpc_method_handler(stream_unary)

        async def unary(request: bytes, context: Any) -> bytes:
            return await c.unary(info, request, context)

        return grpc.unary_unary_rpc_method_handler(unary)
