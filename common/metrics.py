"""Prometheus metrics shared by nodes and proxies.

`RpcMetricsInterceptor` counts every RPC by method and status code and times it
(streams: until the last response message). `serve_metrics` exposes the default
registry on `/metrics` at host:port.

    gitraft_grpc_requests_total{component, method, code}
    gitraft_grpc_request_duration_seconds{component, method}

The concurrency limiter (common.limiter) reports, per limited method and scope (`rpc`
for the whole process, `repository` summed over repositories):

    gitraft_concurrency_in_flight{method, scope}       calls holding a slot
    gitraft_concurrency_queued{method, scope}          calls waiting for one
    gitraft_concurrency_rejected_total{method, scope, reason}   refused (RESOURCE_EXHAUSTED):
                                                       reason = queue_full | queue_timeout
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

REQUESTS = Counter(
    "gitraft_grpc_requests_total",
    "RPCs served, by method and status code.",
    ["component", "method", "code"],
)
DURATION = Histogram(
    "gitraft_grpc_request_duration_seconds",
    "Time to serve an RPC (streams: until the last message).",
    ["component", "method"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

CONCURRENCY_IN_FLIGHT = Gauge(
    "gitraft_concurrency_in_flight",
    "Calls of a limited RPC holding a concurrency slot.",
    ["method", "scope"],
)
CONCURRENCY_QUEUED = Gauge(
    "gitraft_concurrency_queued",
    "Calls of a limited RPC waiting for a concurrency slot.",
    ["method", "scope"],
)
CONCURRENCY_REJECTED = Counter(
    "gitraft_concurrency_rejected_total",
    "Calls refused with RESOURCE_EXHAUSTED by a concurrency limit.",
    ["method", "scope", "reason"],
)


def serve_metrics(addr: str) -> int:
    """Serve /metrics on `addr` ("host:port") in a daemon thread; returns the bound port."""
    host, _, port = addr.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1")
    return int(server.server_address[1])


def _code_of(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    if code is None:
        return "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every RPC; never changes its outcome."""

    def __init__(self, component: str) -> None:
        self._component = component

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self._wrap(handler, handler_call_details.method or "")

    def _observe(self, method: str, start: float, code: str) -> None:
        REQUESTS.labels(self._component, method, code).inc()
        DURATION.labels(self._component, method).observe(time.monotonic() - start)

    def _wrap(self, handler: Any, method: str) -> Any:
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.response_streaming:
            inner_stream = handler.unary_stream or handler.stream_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                start, code = time.monotonic(), "UNKNOWN"
                try:
                    async for item in inner_stream(request, context):
                        yield item
                    code = _code_of(context)
                except BaseException:
                    code = _code_of(context) if context.code() is not None else "CANCELLED"
                    raise
                finally:
                    self._observe(method, start, code)

            if handler.unary_stream:
                return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
            return grpc.stream_stream_rpc_method_handler(stream, **kwargs)

        inner = handler.unary_unary or handler.stream_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start, code = time.monotonic(), "UNKNOWN"
            try:
                result = await inner(request, context)
                code = _code_of(context)
                return result
            except BaseException:
                code = _code_of(context) if context.code() is not None else "UNKNOWN"
                raise
            finally:
                self._observe(method, start, code)

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
