"""Wiring of a storage node's grpc.aio server.

`NodeServer` owns the server: auth, error and concurrency-limit interceptors (in that
order: a refused call is counted, authenticated first, and ends RESOURCE_EXHAUSTED),
every gitraft service, the
standard health service (SERVING once started, NOT_SERVING while stopping) and server
reflection.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from common.auth import TokenAuthInterceptor
from common.interceptors import ErrorInterceptor
from common.limiter import ConcurrencyInterceptor
from common.metrics import RpcMetricsInterceptor, serve_metrics, watch_storage
from common.tls import add_port
from gitraft.v1 import (
    commit_pb2,
    commit_pb2_grpc,
    ref_pb2,
    ref_pb2_grpc,
    repository_pb2,
    repository_pb2_grpc,
    server_pb2,
    server_pb2_grpc,
    smarthttp_pb2,
    smarthttp_pb2_grpc,
)
from node import janitor, replication, replication_source
from node.commit_service import CommitServicer
from node.config import NodeConfig
from node.ref_service import RefServicer
from node.repository_service import RepositoryServicer
from node.server_service import ServerServicer
from node.smarthttp_service import SmartHTTPServicer
from node.storage import Storage

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    repository_pb2.DESCRIPTOR.services_by_name["RepositoryService"].full_name,
    ref_pb2.DESCRIPTOR.services_by_name["RefService"].full_name,
    commit_pb2.DESCRIPTOR.services_by_name["CommitService"].full_name,
    smarthttp_pb2.DESCRIPTOR.services_by_name["SmartHTTPService"].full_name,
    server_pb2.DESCRIPTOR.services_by_name["ServerService"].full_name,
)

# Messages of up to 16 MiB: streams carry data in smaller chunks, this only bounds one.
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


class NodeServer:
    """A running (or ready to run) storage node."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        replication_source.PEER_TLS = config.peer_tls
        self.storage = Storage(config.name, config.storage_path)
        self.server = grpc.aio.server(
            interceptors=[
                RpcMetricsInterceptor("node"),
                TokenAuthInterceptor(config.tokens),
                ErrorInterceptor(),
                ConcurrencyInterceptor(config.concurrency_limits()),
            ],
            options=GRPC_OPTIONS,
        )
        self.health = health.aio.HealthServicer()
        self.repositories = RepositoryServicer(
            self.storage, config.replication_timeout, config.replication_copy_limit
        )
        repository_pb2_grpc.add_RepositoryServiceServicer_to_server(self.repositories, self.server)
        ref_pb2_grpc.add_RefServiceServicer_to_server(RefServicer(self.storage), self.server)
        commit_pb2_grpc.add_CommitServiceServicer_to_server(CommitServicer(self.storage), self.server)
        self.smarthttp = SmartHTTPServicer(self.storage)
        smarthttp_pb2_grpc.add_SmartHTTPServiceServicer_to_server(self.smarthttp, self.server)
        server_pb2_grpc.add_ServerServiceServicer_to_server(ServerServicer(self.storage), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.port = 0
        self.metrics_port = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = threading.Event()  # ends a sweep running in its thread

    async def start(self) -> int:
        """Remove leftovers of a crash, bind and start serving; returns the bound port."""
        removed = await asyncio.to_thread(janitor.sweep_at_start, self.storage.root, self._stopping)
        if removed:
            log.info("removed stale temporaries", extra={"paths": [str(p) for p in removed]})
        if self.config.temporaries_sweep_interval:
            self._sweeper = asyncio.create_task(self._sweep_temporaries())
        self.port = add_port(self.server, self.config.listen_addr, self.config.server_tls)
        if not self.port:
            raise OSError(f"cannot listen on {self.config.listen_addr!r}")
        await self.server.start()
        if self.config.metrics_addr:
            watch_storage(self.config.name, self.storage.root)
            self.metrics_port = serve_metrics(self.config.metrics_addr)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "node serving",
            extra={"node": self.config.name, "addr": self.config.listen_addr, "port": self.port},
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, then stop, letting RPCs in flight finish for `grace` seconds."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._stopping.set()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.server.stop(self.config.shutdown_grace if grace is None else grace)

    async def wait(self) -> None:
        await self.server.wait_for_termination()

    async def _sweep_temporaries(self) -> None:
        """Every temporaries_sweep_interval: remove what git left in repositories when
        cut off, older than temporaries_max_age (node.janitor). Never ends by itself."""
        last_loose: float | None = None
        while True:
            await asyncio.sleep(self.config.temporaries_sweep_interval)
            now = time.monotonic()
            loose = janitor.loose_due(last_loose, now)
            try:
                removed = await asyncio.to_thread(
                    janitor.sweep_storage,
                    self.storage.root,
                    self.config.temporaries_max_age,
                    self._writing,
                    loose=loose,
                    stop=self._stopping,
                )
            except Exception:  # the task never ends by an error: the next sweep may work
                log.exception("temporaries sweep failed")
                continue
            if loose:
                last_loose = now
            if removed:
                log.info("removed stale temporaries", extra={"paths": [str(p) for p in removed]})

    def _writing(self, path: Path) -> bool:
        """Whether a receive-pack, a replication fetch or an optimization runs in the
        repository at `path` (asked from the sweep's thread)."""
        return (
            self.smarthttp.writers.running(path) > 0
            or replication.replicating(path)
            or self.repositories.optimizing.running(path) > 0
        )

    async def _set_health(self, status: int) -> None:
        for service in ("", *SERVICE_NAMES):
            await self.health.set(service, status)
