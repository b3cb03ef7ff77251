"""Concurrency limits per RPC and per repository, with bounded wait queues (as Gitaly's
`[[concurrency]]`).

    ConcurrencyLimit(rpc="/gitraft.v1.SmartHTTPService/PostUploadPack",
                     max_in_flight=16, max_per_repo=8, max_queue_size=32, max_queue_wait=10.0)

For each limited RPC a call first takes a slot of its repository (at most `max_per_repo`
calls of that RPC on one repository), then a slot of the RPC (at most `max_in_flight`
on the whole process); 0 means no limit at that level. A call that finds no free slot
waits in that limiter's queue, in arrival order; it is refused with RESOURCE_EXHAUSTED
when `max_queue_size` callers already wait there, or when it has waited
`max_queue_wait` seconds. The repository is read from the request's `repository` field
(the first message of a client stream). RPCs without a ConcurrencyLimit are not limited.

`ConcurrencyInterceptor` applies the limits to a grpc.aio server; put it after
common.interceptors.ErrorInterceptor so that its refusals become statuses. Metrics
(common.metrics): gitraft_concurrency_in_flight / _queued {method, scope} and
gitraft_concurrency_rejected_total {method, scope, reason}, scope being `rpc` or
`repository` (summed over repositories), reason `queue_full` or `queue_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from common.errors import ResourceExhaustedError, quoted
from common.metrics import CONCURRENCY_IN_FLIGHT, CONCURRENCY_QUEUED, CONCURRENCY_REJECTED


@dataclass
class ConcurrencyLimit:
    """The limits of one RPC (config table `[[concurrency]]`)."""

    # Full method path, e.g. "/gitraft.v1.SmartHTTPService/PostUploadPack".
    rpc: str = ""
    # Calls of this RPC running at once on the process; 0 = no limit.
    max_in_flight: int = 0
    # Calls of this RPC running at once on one repository; 0 = no limit.
    max_per_repo: int = 0
    # Callers that may wait for a slot, per limiter (the RPC's, and each repository's).
    max_queue_size: int = 32
    # Seconds a caller may wait for a slot.
    max_queue_wait: float = 10.0

    def __post_init__(self) -> None:
        if not self.rpc.startswith("/") or self.rpc.count("/") != 2:
            raise ValueError(
                f"concurrency: rpc must be a method path like '/pkg.Service/Method': {self.rpc!r}"
            )
        if min(self.max_in_flight, self.max_per_repo, self.max_queue_size) < 0 or self.max_queue_wait <= 0:
            raise ValueError(f"concurrency: limits of {self.rpc!r} must not be negative, the wait positive")


class Refused(Exception):
    """No slot: `reason` is "queue_full" or "queue_timeout"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Limiter:
    """At most `limit` holders at once; up to `max_queue` more wait in arrival order, each
    for at most the `wait` it passes to `acquire`. Single event loop, not thread-safe."""

    def __init__(self, limit: int, max_queue: int, labels: tuple[str, str]) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._in_flight = CONCURRENCY_IN_FLIGHT.labels(*labels)
        self._queued = CONCURRENCY_QUEUED.labels(*labels)

    @property
    def idle(self) -> bool:
        return self.running == 0 and not self._waiters

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, wait: float) -> None:
        """Take a slot, waiting at most `wait` seconds; Refused when the queue is full or
        the wait is over. A cancelled caller leaves the queue and holds nothing."""
        if self.running < self.limit and not self._waiters:
            self.running += 1
            self._in_flight.inc()
            return
        if len(self._waiters) >= self.max_queue:
            raise Refused("queue_full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._queued.inc()
        try:
            async with asyncio.timeout(wait):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # a slot was handed over just as we gave up: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise Refused("queue_timeout") from None
            raise
        finally:
            self._queued.dec()

    def release(self) -> None:
        """Give the slot to the longest waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands: `running` stays
                return
        self.running -= 1
        self._in_flight.dec()


class RpcLimits:
    """The limiters of one RPC: one for the RPC, one per busy repository."""

    def __init__(self, limit: ConcurrencyLimit) -> None:
        self.limit = limit
        self.name = limit.rpc.rsplit("/", 1)[-1]
        self._rpc = (
            Limiter(limit.max_in_flight, limit.max_queue_size, (limit.rpc, "rpc"))
            if limit.max_in_flight
            else None
        )
        self._repositories: dict[str, Limiter] = {}

    @property
    def per_repository(self) -> bool:
        return self.limit.max_per_repo > 0

    @contextlib.asynccontextmanager
    async def slot(self, repository: str | None) -> AsyncIterator[None]:
        """Hold a slot of `repository` (when limited per repository and known), then one of
        the RPC, for the body; ResourceExhaustedError when refused."""
        async with contextlib.AsyncExitStack() as stack:
            if repository is not None and self.per_repository:
                await stack.enter_async_context(self._repository_slot(repository))
            if self._rpc is not None:
                await stack.enter_async_context(self._hold(self._rpc, "rpc", repository))
            yield

    @contextlib.asynccontextmanager
    async def _repository_slot(self, repository: str) -> AsyncIterator[None]:
        limiter = self._repositories.get(repository)
        if limiter is None:
            labels = (self.limit.rpc, "repository")
            limiter = self._repositories[repository] = Limiter(
                self.limit.max_per_repo, self.limit.max_queue_size, labels
            )
        try:
            async with self._hold(limiter, "repository", repository):
                yield
        finally:
            if limiter.idle and self._repositories.get(repository) is limiter:
                del self._repositories[repository]

    @contextlib.asynccontextmanager
    async def _hold(self, limiter: Limiter, scope: str, repository: str | None) -> AsyncIterator[None]:
        try:
            await limiter.acquire(self.limit.max_queue_wait)
        except Refused as refused:
            CONCURRENCY_REJECTED.labels(self.limit.rpc, scope, refused.reason).inc()
            raise ResourceExhaustedError(self._message(refused.reason, scope, limiter, repository)) from None
        try:
            yield
        finally:
            limiter.release()

    def _message(self, reason: str, scope: str, limiter: Limiter, repository: str | None) -> str:
        where = f"repository {quoted(repository)}" if scope == "repository" else "this node"
        if reason == "queue_full":
            return (
                f"too many concurrent {self.name} calls on {where}: {limiter.running} running, "
                f"{limiter.waiting} waiting; retry later"
            )
        return f"waited {self.limit.max_queue_wait:g} s for a {self.name} slot on {where}; retry later"


def repository_of(request: Any) -> str | None:
    """The `storage_name/relative_path` a request names in its `repository` field, if any."""
    repository = getattr(request, "repository", None)
    if repository is None or not getattr(repository, "relative_path", ""):
        return None
    path = "/".join(p for p in str(repository.relative_path).split("/") if p not in ("", "."))
    return f"{repository.storage_name}/{path}"


Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Any]]


class ConcurrencyInterceptor(grpc.aio.ServerInterceptor):
    """Applies `limits` (one ConcurrencyLimit per RPC) to every call of those RPCs."""

    def __init__(self, limits: Iterable[ConcurrencyLimit]) -> None:
        self._limits = {limit.rpc: RpcLimits(limit) for limit in limits}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        limits = self._limits.get(handler_call_details.method or "")
        if handler is None or limits is None:
            return handler
        return _wrap(handler, limits)


async def _first_and_rest(requests: AsyncIterator[Any]) -> tuple[Any, AsyncIterator[Any]]:
    """The first request message (None for an empty stream) and the whole stream again."""
    iterator = aiter(requests)
    first = await anext(iterator, None)

    async def again() -> AsyncIterator[Any]:
        if first is None:
            return
        yield first
        async for request in iterator:
            yield request

    return first, again()


def _wrap(handler: Any, limits: RpcLimits) -> Any:
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    streaming = handler.request_streaming

    async def admitted(request: Any) -> tuple[str | None, Any]:
        if not streaming:
            return repository_of(request), request
        if not limits.per_repository:
            return None, request
        first, requests = await _first_and_rest(request)
        return repository_of(first), requests

    if handler.response_streaming:
        inner_stream = handler.unary_stream or handler.stream_stream

        async def stream_behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            repository, request = await admitted(request)
            async with limits.slot(repository):
                async for item in inner_stream(request, context):
                    yield item

        factory = grpc.stream_stream_rpc_method_handler if streaming else grpc.unary_stream_rpc_method_handler
        return factory(stream_behavior, **kwargs)

    inner_unary = handler.unary_unary or handler.stream_unary

    async def unary_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        repository, request = await admitted(request)
        async with limits.slot(repository):
            return await inner_unary(request, context)

    factory2 = grpc.stream_unary_rpc_method_handler if streaming else grpc.unary_unary_rpc_method_handler
    return factory2(unary_behavior, **kwargs)
