"""Coordination: one generic gRPC handler that serves every forwarded RPC, bytes in and out.

`Coordinator.handler()` is a `grpc.GenericRpcHandler`. For each call it parses only the
first request message (to read and rewrite the target repository or storage), asks
the router for a route, and forwards to the chosen node(s). Responses pass through as
raw bytes; streams are relayed message by message, never buffered whole. The client's
deadline, cancellation and correlation id go to the node with the node token; a node's
error reaches the client with the same status code and message (`NodeError`).

Paths (see DESIGN.md "Paths through the system"):
- mutator: look up, `begin_write` (Raft; the route is re-checked on the state it
  applied, so no barrier is needed) -> primary -> `finish_write` (Raft:
  generation bump + update jobs) -> the client's answer. In a response stream the last
  message is held back until `finish_write` has committed, so the call's end (and the
  gateway's end of the HTTP response) never precedes the metadata. A node error closes
  the intent with the primary failed, then compares the primary's checksum with the
  up-to-date secondaries and bumps the generation unless all are equal (also when no
  secondary is up to date: a lagging one could otherwise copy the half-changed primary
  and end up at the same generation with other content). If the proxy dies
  anywhere in between, the intent stays open and the leader repairs it (cluster.background.intent_repair).
  `finish_write` applies the fence (DESIGN.md invariant 8): a write whose primary moved,
  or that another write overtook, while it ran is answered FAILED_PRECONDITION ("write
  not acknowledged: ...; retry"), never acknowledged.
  The node call is bounded to end before the intent's deadline, so a repair never runs
  while the write it repairs can still change the primary: a unary mutator takes at most
  about `write_intent_timeout` (or the client's own longer deadline); a streaming one
  (a push) renews its intent while bytes flow and is cut off only after about that long
  without progress (cluster.proxy.intent_renewal).
- accessor: shared barrier, look up, one healthy up-to-date replica at random; on
  UNAVAILABLE before anything was relayed (and, for a request stream, before more
  than its first message was sent) it is tried again on another such replica.
- maintenance: every healthy assigned replica, no generation change.
- storage scope: the named storage, request unchanged.
- server scope: ServerInfo is answered by the proxy itself (server_version names the
  proxy, storage_name is empty); any other server-scoped method goes to one healthy node.
- RPCs whose request names a second repository (`additional_repository`: node-internal
  ReplicateRepository) are refused with INVALID_ARGUMENT.
Repository creation and removal are in cluster.proxy.repositories; the bytes-level calls to
nodes in cluster.proxy.forwarding. A mutator whose primary's channel cannot connect within
a second is refused (UNAVAILABLE) before its intent is written.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message

from cluster.metadata.api import MetadataStore, Repository
from cluster.observability.metrics import ProxyMetrics
from cluster.proxy.barrier import SharedBarrier
from cluster.proxy.forwarding import (
    NodeError,
    RequestLog,
    call_timeout,
    code_of,
    first_message,
    forward_stream,
    forward_unary,
    parse,
    read_checksum,
    refuse_second_repository,
    replica_of,
    rewrite,
    target_path,
    time_remaining,
)
from cluster.proxy.intent_renewal import IntentKeeper
from cluster.proxy.nodes import NodePool
from cluster.proxy.router import (
    MethodInfo,
    OpType,
    Registry,
    Scope,
    route_accessor,
    route_maintenance,
    route_mutator,
    route_storage,
)
from common.errors import (
    FailedPreconditionError,
    GitraftError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from common.logs import bind_fields
from gitraft.v1 import server_pb2

log = logging.getLogger(__name__)

PROXY_VERSION = "gitraft-proxy/0.1.0"
# Bound on the checksum comparison after a failed mutator.
CHECKSUM_TIMEOUT = 10.0
# Re-exported for the modules that use the coordinator (cluster.proxy.repositories, tests).
__all__ = ["CREATE", "Coordinator", "NodeError", "OpenIntent", "replica_of", "rewrite"]
# Attempts of a read that fails with UNAVAILABLE before anything was relayed.
READ_ATTEMPTS = 3
# How a node words NOT_FOUND for a repository missing at the path it was asked about
# (node.storage.Storage.existing_path_of).
MISSING_REPLICA = "repository not found: "
# Seconds between the end of a mutator's node call and its intent's deadline (at most
# a quarter of write_intent_timeout).
INTENT_MARGIN = 5.0

CREATE = "/gitraft.v1.RepositoryService/CreateRepository"
REMOVE = "/gitraft.v1.RepositoryService/RemoveRepository"
EXISTS = "/gitraft.v1.RepositoryService/RepositoryExists"
SERVER_INFO = "/gitraft.v1.ServerService/ServerInfo"

CreateHook = Callable[[str, message.Message, MethodInfo, Any], Awaitable[bytes]]
RemoveHook = Callable[[str, MethodInfo, Any], Awaitable[bytes]]


@dataclass(frozen=True)
class OpenIntent:
    intent_id: str
    # Seconds the node call may take unless the intent is renewed (see IntentKeeper): it
    # must end before the intent can be repaired.
    timeout: float
    # Seconds from its begin to the intent's deadline.
    lifetime: float = 0.0


class Coordinator:
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
    ) -> None:
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
        # Set by the proxy wiring: creation/removal (cluster.proxy.repositories).
        self.create_repository: CreateHook | None = None
        self.remove_repository: RemoveHook | None = None

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

    async def _unary(self, info: MethodInfo, request: message.Message, context: Any) -> bytes:
        if info.scope is Scope.STORAGE:
            storage = await self._storage_target(info, request)
            return await self.call_unary(info, storage, request.SerializeToString(), context)
        if info.scope is Scope.SERVER:
            if info.path == SERVER_INFO:
                return server_pb2.ServerInfoResponse(server_version=PROXY_VERSION).SerializeToString()
            storage = await self._any_healthy_storage()
            return await self.call_unary(info, storage, request.SerializeToString(), context)
        path = target_path(info, request)
        refuse_second_repository(info)
        if info.path == CREATE and self.create_repository is not None:
            return await self.create_repository(path, request, info, context)
        if info.path == REMOVE and self.remove_repository is not None:
            return await self.remove_repository(path, info, context)
        if info.op is OpType.MUTATOR:
            return await self._mutate(info, request, path, context)
        repo = await self.lookup(path, info)
        if repo is None:
            return info.response_class().SerializeToString()  # RepositoryExists: false
        healthy = await self.store.healthy_storages(self.clock())
        if info.op is OpType.MAINTENANCE:
            storages = route_maintenance(repo, healthy).storages
            answers = await asyncio.gather(
                *(self.call_unary(info, s, rewrite(info, request, repo, s), context) for s in storages)
            )
            return answers[0]
        tried: list[str] = []
        writing = await self._writing(repo)
        while True:
            storage = self._read_from(repo, healthy, tried, writing)
            bound = self._read_bound(context) if _another_replica(repo, healthy, tried, storage) else None
            try:
                return await self.call_unary(
                    info, storage, rewrite(info, request, repo, storage), context, bound
                )
            except NodeError as exc:
                if not _retry_read(self._silent(exc, storage, bound), tried, storage):
                    raise

    async def _mutate(self, info: MethodInfo, request: message.Message, path: str, context: Any) -> bytes:
        repo, primary, intent = await self.open_write(path, info, context)
        try:
            forwarded = rewrite(info, request, repo, primary)
            response = await self.call_unary(info, primary, forwarded, context, intent.timeout)
        except BaseException as exc:
            await self.after_failed_write(intent.intent_id, repo, primary, exc)
            raise
        await asyncio.shield(self.finish_write(intent.intent_id, primary))
        return response

    async def _stream(
        self, info: MethodInfo, request: message.Message, rest: AsyncIterator[bytes] | None, context: Any
    ) -> AsyncIterator[bytes]:
        if info.scope is not Scope.REPOSITORY:
            if info.scope is Scope.STORAGE:
                storage = await self._storage_target(info, request)
            else:
                storage = await self._any_healthy_storage()
            async for chunk in self.call_stream(info, storage, request.SerializeToString(), rest, context):
                yield chunk
            return
        path = target_path(info, request)
        refuse_second_repository(info)
        if info.op is OpType.MAINTENANCE:
            raise InvalidArgumentError(f"streaming maintenance rpc is not supported: {info.path!r}")
        if info.op is OpType.ACCESSOR:
            repo = await self.lookup(path, info)
            if repo is None:
                raise NotFoundError(f"repository not found: {path!r}")
            healthy = await self.store.healthy_storages(self.clock())
            tried: list[str] = []
            writing = await self._writing(repo)
            request_log = RequestLog(rest) if rest is not None else None
            while True:
                storage = self._read_from(repo, healthy, tried, writing)
                first = rewrite(info, request, repo, storage)
                relayed = False
                attempt = request_log.attempt() if request_log is not None else None
                responses = self.call_stream(info, storage, first, attempt, context)
                try:
                    bounded = _another_replica(repo, healthy, tried, storage)
                    head = await self._first_response(responses, storage, bounded)
                    if head is None:
                        return
                    relayed = True
                    yield head
                    async for chunk in responses:
                        yield chunk
                    return
                except NodeError as exc:
                    replayable = request_log is None or request_log.replayable
                    if relayed or not replayable or not _retry_read(exc, tried, storage):
                        raise
                finally:
                    close = getattr(responses, "aclose", None)
                    if close is not None:
                        await close()
        repo, primary, intent = await self.open_write(path, info, context)
        held: bytes | None = None
        keeper = IntentKeeper(
            self.store, intent.intent_id, intent.lifetime, intent.lifetime - intent.timeout, self.clock
        )
        renewing = asyncio.get_running_loop().create_task(keeper.run())
        try:
            first = rewrite(info, request, repo, primary)
            requests = keeper.relay(rest) if rest is not None else None
            async for chunk in keeper.bounded(self.call_stream(info, primary, first, requests, context)):
                if held is not None:
                    yield held
                held = chunk
        except BaseException as exc:
            await self.after_failed_write(intent.intent_id, repo, primary, exc)
            raise
        finally:
            renewing.cancel()
        await asyncio.shield(self.finish_write(intent.intent_id, primary))
        if held is not None:
            yield held

    async def lookup(self, relative_path: str, info: MethodInfo) -> Repository | None:
        """The repository after a (shared) barrier; NotFoundError unless RepositoryExists."""
        bind_fields(repository=relative_path)  # this RPC's log lines name it
        await self.barrier.wait()
        repo = await self.store.get_repository(relative_path)
        if repo is None and info.path != EXISTS:
            raise NotFoundError(f"repository not found: {relative_path!r}")
        return repo

    async def _writing(self, repo: Repository) -> frozenset[str]:
        """Storages under an open write intent for `repo` (read after the lookup's barrier,
        so every intent begun before this read is seen)."""
        return frozenset(s for i in await self.store.open_intents(repo.repository_id) for s in i.storages)

    def _read_bound(self, context: Any) -> float | None:
        """The proxy's own bound on a unary read's node call: `read_first_response_timeout`
        when the client allows longer (or set no deadline), else None (the client's
        deadline binds)."""
        remaining = time_remaining(context)
        if remaining is not None and remaining <= self.read_first_response_timeout:
            return None
        return self.read_first_response_timeout

    def _silent(self, exc: NodeError, storage: str, bound: float | None) -> NodeError:
        """A node call cut off by the proxy's own read bound is UNAVAILABLE (retried on
        another replica), not the client's DEADLINE_EXCEEDED."""
        if bound is None or exc.code != grpc.StatusCode.DEADLINE_EXCEEDED:
            return exc
        message = f"storage {storage!r} did not answer within {bound:g} s"
        return NodeError(grpc.StatusCode.UNAVAILABLE, message)

    async def _first_response(
        self, responses: AsyncIterator[bytes], storage: str, bounded: bool
    ) -> bytes | None:
        """The first response message of a read (None: the node sent none). When
        `bounded` (another replica could serve it), within `read_first_response_timeout`:
        a node silent that long (paused, wedged) is UNAVAILABLE, so the read is tried on
        another replica when nothing was consumed. The last candidate is waited for as
        long as the client allows (an overloaded cluster is slow rather than failing)."""
        try:
            timeout = self.read_first_response_timeout if bounded else None
            return await asyncio.wait_for(anext(responses), timeout)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise NodeError(
                grpc.StatusCode.UNAVAILABLE,
                f"storage {storage!r} did not answer within {self.read_first_response_timeout:g} s",
            ) from None

    def _read_from(
        self, repo: Repository, healthy: set[str], tried: list[str], writing: frozenset[str] = frozenset()
    ) -> str:
        """A replica to read from, preferring ones not yet `tried` (then any again), and
        ones not in `writing` (see route_accessor)."""
        untried = healthy - set(tried)
        candidates = [s for s in repo.up_to_date() if s in untried]
        storage = route_accessor(repo, untried if candidates else healthy, writing=writing).storage
        self.metrics.reads.labels(storage=storage).inc()
        bind_fields(storage=storage)
        return storage

    async def _storage_target(self, info: MethodInfo, request: message.Message) -> str:
        name = str(getattr(request, info.storage_field))
        known = [s.name for s in await self.store.storages()]
        return route_storage(name, known).storage

    async def _any_healthy_storage(self) -> str:
        healthy = sorted(await self.store.healthy_storages(self.clock()))
        if not healthy:
            raise UnavailableError("no healthy storage")
        return random.choice(healthy)

    # --- intents -----------------------------------------------------------------

    async def open_write(
        self, relative_path: str, info: MethodInfo, context: Any
    ) -> tuple[Repository, str, OpenIntent]:
        """Route a mutator and commit its intent: (repository, primary, intent).

        No barrier: the route is chosen on local state, then checked again on the state
        right after `begin_write` applied here, which includes every command committed
        before it. When the check disagrees (the primary moved, the repository went),
        the intent is closed without change and routing starts over once. A refusal is
        only ever decided after a barrier."""
        bind_fields(repository=relative_path)
        repo = await self.store.get_repository(relative_path)
        if repo is None:
            repo = await self.lookup(relative_path, info)
        assert repo is not None
        for attempt in range(2):
            try:
                primary = route_mutator(repo, await self.store.healthy_storages(self.clock())).primary
            except GitraftError:  # refuse only on fresh state
                repo = await self.lookup(relative_path, info)
                assert repo is not None
                primary = route_mutator(repo, await self.store.healthy_storages(self.clock())).primary
            await self.nodes.connect(primary)  # unreachable: refused before any intent
            try:
                intent = await self.begin_write(repo, primary, context)
            except NotFoundError:  # the local view was stale: it is gone (or re-created)
                repo = await self.lookup(relative_path, info)
                assert repo is not None
                continue
            fresh = await self.store.get_repository_by_id(repo.repository_id)
            try:
                if fresh is None or fresh.relative_path != relative_path:
                    raise NotFoundError(f"repository not found: {relative_path!r}")
                healthy = await self.store.healthy_storages(self.clock())
                if route_mutator(fresh, healthy).primary == primary:
                    return fresh, primary, intent
            except BaseException:
                await self.store.finish_write(intent.intent_id, [], [], self.clock())
                raise
            await self.store.finish_write(intent.intent_id, [], [], self.clock())
            if attempt == 0:
                repo = fresh
        raise UnavailableError(f"primary of repository {relative_path!r} is changing; retry")

    async def begin_write(self, repo: Repository, primary: str, context: Any) -> OpenIntent:
        """Commit a write intent for `primary` in Raft.

        The intent's deadline is `write_intent_timeout` from now, or the client's deadline
        plus a margin when that is later; the node call must end `margin` before it (see
        OpenIntent.timeout), so that the leader's repair, which starts only after the
        deadline, sees the write's effect on the primary if there is any."""
        intent_id = uuid.uuid4().hex
        bind_fields(storage=primary)
        margin = min(INTENT_MARGIN, self.write_intent_timeout / 4)
        remaining = time_remaining(context) or 0.0
        lifetime = max(self.write_intent_timeout, remaining + 2 * margin)
        await self.store.begin_write(
            intent_id, repo.repository_id, [primary], self.proxy_name, self.clock() + lifetime
        )
        return OpenIntent(intent_id, lifetime - margin, lifetime)

    async def finish_write(self, intent_id: str, primary: str) -> None:
        """Record a successful write on `primary` (callers shield it: a client going away
        after the node wrote must not leave the intent to the repair).

        FailedPreconditionError when the fence refused it (the primary moved, or another
        write committed, while it ran: DESIGN.md invariant 8): the write is not
        acknowledged and `primary`'s replica is being repaired."""
        result = await self.store.finish_write(intent_id, [primary], [], self.clock())
        if result.scheduled:
            self.on_jobs_scheduled()
        if result.fenced:
            self.metrics.writes.labels(storage=primary, outcome="fenced").inc()
            log.warning(
                "write fenced", extra={"intent_id": intent_id, "storage": primary, "reason": result.fenced}
            )
            raise FailedPreconditionError(f"write not acknowledged: {result.fenced}; retry")
        self.metrics.writes.labels(storage=primary, outcome="ok").inc()

    async def after_failed_write(
        self, intent_id: str, repo: Repository, primary: str, exc: BaseException
    ) -> None:
        """Close the intent as failed, then bump the generation if the primary changed anyway.

        On cancellation this runs in a task of its own; when Raft or the primary cannot
        be reached the intent (or the failed mark) is left for the leader's repair."""
        self.metrics.writes.labels(storage=primary, outcome="error").inc()
        work = self._close_failed(intent_id, repo, primary)
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            _spawn(work)
            return
        try:
            await asyncio.wait_for(work, CHECKSUM_TIMEOUT)
        except Exception as err:
            log.warning("could not settle a failed write", extra={"intent_id": intent_id, "error": str(err)})

    async def _close_failed(self, intent_id: str, repo: Repository, primary: str) -> None:
        await self.store.finish_write(intent_id, [], [primary], self.clock())
        if not await self.primary_matches_secondaries(repo, primary):
            log.warning(
                "failed write changed the primary; bumping its generation",
                extra={"repository": repo.relative_path, "storage": primary},
            )
            bump = await self.begin_write(repo, primary, None)
            await self.finish_write(bump.intent_id, primary)

    async def primary_matches_secondaries(self, repo: Repository, primary: str) -> bool:
        """Whether `primary`'s checksum equals that of every reachable up-to-date secondary
        (at least one). False when one differs or none can be compared (nothing shows the
        primary unchanged); raises when the primary's checksum cannot be read."""
        fresh = await self.store.get_repository_by_id(repo.repository_id) or repo
        others = [s for s in fresh.up_to_date() if s != primary]
        mine, *theirs = await asyncio.gather(
            self.checksum(fresh, primary),
            *(self.checksum(fresh, s) for s in others),
            return_exceptions=True,
        )
        if isinstance(mine, BaseException):
            raise mine
        compared = [t for t in theirs if not isinstance(t, BaseException)]
        return bool(compared) and all(t == mine for t in compared)

    # --- calls to nodes (cluster.proxy.forwarding; methods so tests can stand in for nodes) ---

    async def checksum(self, repo: Repository, storage: str) -> str:
        return await read_checksum(self.nodes, repo, storage)

    async def call_unary(
        self, info: MethodInfo, storage: str, request: bytes, context: Any, limit: float | None = None
    ) -> bytes:
        """Forward one unary request to `storage` within the client's deadline and `limit`
        seconds; NodeError with the node's status."""
        return await forward_unary(self.nodes, info, storage, request, call_timeout(context, limit))

    def call_stream(
        self,
        info: MethodInfo,
        storage: str,
        first: bytes,
        rest: AsyncIterator[bytes] | None,
        context: Any,
        limit: float | None = None,
    ) -> AsyncIterator[bytes]:
        """Forward a response-streaming call to `storage`, relaying each message as it
        comes, within the client's deadline and `limit` seconds."""
        return forward_stream(self.nodes, info, storage, first, rest, call_timeout(context, limit))

    def _observe(self, info: MethodInfo, code: grpc.StatusCode, started: float) -> None:
        log.info("rpc finished", extra={"method": info.path, "route": info.route_label, "code": code.name})
        self.metrics.rpcs.labels(method=info.path, route=info.route_label, code=code.name).inc()
        self.metrics.rpc_duration.labels(method=info.path, route=info.route_label).observe(
            time.monotonic() - started
        )


# --- helpers ---------------------------------------------------------------------------


def _another_replica(repo: Repository, healthy: set[str], tried: list[str], storage: str) -> bool:
    """Whether a read about to run on `storage` could be retried on another healthy,
    up-to-date replica not tried yet (within READ_ATTEMPTS)."""
    if len(tried) + 1 >= READ_ATTEMPTS:
        return False
    return any(s in healthy and s != storage and s not in tried for s in repo.up_to_date())


def _retry_read(exc: NodeError, tried: list[str], storage: str) -> bool:
    """Whether a read that failed on `storage` with `exc` is tried again (on another
    replica when there is one), at most READ_ATTEMPTS times: for UNAVAILABLE (nothing
    was served; e.g. a channel still reconnecting to a restarted node, or a silent one),
    and for a node that has no repository at the replica's path although the metadata
    says the replica is current (deleted on disk, not yet noticed by the reconciler)."""
    tried.append(storage)
    missing = exc.code == grpc.StatusCode.NOT_FOUND and str(exc).startswith(MISSING_REPLICA)
    if not (exc.code == grpc.StatusCode.UNAVAILABLE or missing) or len(tried) >= READ_ATTEMPTS:
        return False
    log.info("read retried", extra={"storage": storage, "error": str(exc)})
    return True


_background: set[asyncio.Task[Any]] = set()


def _spawn(work: Awaitable[Any]) -> None:
    async def run() -> None:
        try:
            await work
        except Exception as exc:
            log.warning("background settle failed", extra={"error": str(exc)})

    task = asyncio.get_running_loop().create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)


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
