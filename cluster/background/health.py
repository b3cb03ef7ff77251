"""Health checks: this proxy's view of every node, recorded in Raft.

`HealthChecker.check_all()` sends one grpc.health.v1 Check to every node at once. A
node turns unhealthy after `failure_threshold` consecutive failed checks (not SERVING,
error or timeout) and healthy again after one good check. `run()` repeats it every
`interval` seconds and submits `record_health` for each storage whose view changed,
plus every storage again every `refresh` seconds, so the store's liveness window (a
proxy counts as live while its votes are fresh) sees this proxy as live. A vote that
cannot be committed (no quorum) is retried on the next round.

Routing never uses this local view: it uses the cluster's view
(MetadataStore.healthy_storages, a majority of live proxies). The local view is only
shown in metrics, and in ClusterStatus for a node this proxy has not voted on yet
(ClusterStatus otherwise shows every proxy's recorded vote).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cluster.background.periodic import run_periodically
from cluster.metadata.api import MetadataStore
from cluster.observability.metrics import ProxyMetrics
from cluster.proxy.nodes import NodePool
from common.errors import GitraftError

log = logging.getLogger(__name__)


class HealthChecker:
    def __init__(
        self,
        *,
        proxy_name: str,
        store: MetadataStore,
        nodes: NodePool,
        metrics: ProxyMetrics,
        interval: float,
        timeout: float,
        refresh: float,
        failure_threshold: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.proxy_name = proxy_name
        self.store = store
        self.nodes = nodes
        self.metrics = metrics
        self.interval = interval
        self.timeout = timeout
        self.refresh = refresh
        self.failure_threshold = max(1, failure_threshold)
        self.clock = clock
        self.view: dict[str, bool] = {}
        self._failures: dict[str, int] = {}
        self._recorded: dict[str, tuple[bool, float]] = {}

    async def check_all(self) -> dict[str, bool]:
        """Check every node once; update and return the local view."""
        names = self.nodes.names()
        results = await asyncio.gather(*(self._check(n) for n in names))
        for name, ok in zip(names, results, strict=True):
            failures = 0 if ok else self._failures.get(name, 0) + 1
            self._failures[name] = failures
            previous = self.view.get(name)
            if ok:
                self.view[name] = True
            elif previous is None or failures >= self.failure_threshold:
                self.view[name] = False
            self.metrics.node_healthy.labels(storage=name).set(1 if self.view[name] else 0)
            if previous is not None and previous != self.view[name]:
                log.warning("node health changed", extra={"storage": name, "healthy": self.view[name]})
        return dict(self.view)

    async def record(self) -> None:
        """Submit the votes that changed or are due for a refresh."""
        now = self.clock()
        for name, healthy in sorted(self.view.items()):
            last = self._recorded.get(name)
            if last is not None and last[0] == healthy and now - last[1] < self.refresh:
                continue
            try:
                await self.store.record_health(self.proxy_name, name, healthy, now)
            except GitraftError as exc:
                log.info("health vote not recorded", extra={"storage": name, "error": str(exc)})
                return
            self._recorded[name] = (healthy, now)

    async def round(self) -> None:
        """Learn nodes registered by other proxies, check every node, record the votes."""
        for storage in await self.store.storages():
            self.nodes.set_address(storage.name, storage.address)
        await self.check_all()
        await self.record()

    async def run(self, stop: asyncio.Event) -> None:
        """Check and record every `interval` seconds until `stop` is set."""
        await run_periodically("health", self.round, stop, self.interval, fixed_rate=True)

    async def _check(self, name: str) -> bool:
        stub: Any = health_pb2_grpc.HealthStub(self.nodes.channel(name))
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=self.timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
