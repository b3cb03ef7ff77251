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

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from common.logs import CORRELATION_METADATA_KEY

log = logging.getLogger("gitraft.access")
# Health checks arrive every fraction of a second from every proxy: counted, not logged.
_QUIET_PREFIX = "/grpc.health.v1."

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


def _correlation_of(context: grpc.aio.ServicerContext) -> str:
    """The caller's correlation id (this interceptor runs outside the one that sets the
    ContextVar, so it reads the metadata itself)."""
    for key, value in context.invocation_metadata() or ():
        if key == CORRELATION_METADATA_KEY and isinstance(value, str):
            return value
    return ""


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

    def _observe(self, method: str, start: float, code: str, context: grpc.aio.ServicerContext) -> None:
        elapsed = time.monotonic() - start
        REQUESTS.labels(self._component, method, code).inc()
        DURATION.labels(self._component, method).observe(elapsed)
        if not method.startswith(_QUIET_PREFIX):  # one access-log line per RPC
            extra = {"method": method, "code": code, "duration_ms": round(elapsed * 1000, 1)}
            if cid := _correlation_of(context):
                extra["correlation_id"] = cid
            log.info("rpc finished", extra=extra)

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
                    self._observe(method, start, code, context)

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
                self._observe(method, start, code, context)

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)


# --- Storage nodes: git subprocesses and disk space (issue 12) ---------------------
#
#     gitraft_node_git_duration_seconds{command}        a git child's life, by subcommand
#     gitraft_node_git_bytes_total{command, direction}  bytes into git's stdin ("in": pushed
#                                                       packs) and out of its stdout ("out":
#                                                       fetched packs, advertisements)
#     gitraft_node_storage_free_bytes{storage}          free space for unprivileged users
#     gitraft_node_storage_size_bytes{storage}          size of the storage's filesystem
#     gitraft_node_temporaries_removed_total{kind}      temporaries git left when cut off,
#                                                       removed (node.janitor)

GIT_COMMANDS = frozenset(
    {"upload-pack", "receive-pack", "fetch", "clone", "init", "pack-objects", "repack", "gc", "bundle"}
)
GIT_DURATION = Histogram(
    "gitraft_node_git_duration_seconds",
    "Run time of git child processes, by subcommand (other: any not listed).",
    ["command"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
GIT_BYTES = Counter(
    "gitraft_node_git_bytes",
    "Bytes streamed into (in) and out of (out) git child processes.",
    ["command", "direction"],
)


def git_command_label(command: str) -> str:
    """A bounded label for a git subcommand."""
    return command if command in GIT_COMMANDS else "other"


class StorageSpaceCollector:
    """Free and total bytes of each watched storage directory, read at scrape time."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def collect(self) -> Iterator[Metric]:
        free = GaugeMetricFamily(
            "gitraft_node_storage_free_bytes", "Free bytes on the storage's filesystem", labels=["storage"]
        )
        size = GaugeMetricFamily(
            "gitraft_node_storage_size_bytes", "Size of the storage's filesystem", labels=["storage"]
        )
        for name, path in sorted(self.paths.items()):
            try:
                st = os.statvfs(path)
            except OSError:
                continue
            free.add_metric([name], st.f_bavail * st.f_frsize)
            size.add_metric([name], st.f_blocks * st.f_frsize)
        yield free
        yield size


STORAGE_SPACE = StorageSpaceCollector()
REGISTRY.register(STORAGE_SPACE)


def watch_storage(name: str, path: str | os.PathLike[str]) -> None:
    """Report the free space of `path` as storage `name` on /metrics."""
    STORAGE_SPACE.paths[name] = os.fspath(path)
