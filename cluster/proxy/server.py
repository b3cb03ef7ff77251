"""Wiring of one routing proxy: gRPC server, metadata store, loops, gateway, metrics.

`ProxyServer.start()`:
1. binds the gRPC server (health NOT_SERVING) and /metrics;
2. starts the metadata store and waits until a barrier commits (a Raft leader is known
   and this member caught up), registers the configured nodes (`register_storage`);
3. runs one health round (so this proxy's votes are in Raft), then starts the health,
   replication, intent-repair, elector, reconciler and verifier loops (all but the
   first two act only while this proxy leads Raft) and the git HTTP gateway
   (calling this proxy's coordinator in-process: cluster.gateway.local);
4. reports SERVING.

`stop()` reverses it: NOT_SERVING, gateway, gRPC server (RPCs in flight get
`shutdown_grace` seconds), loops, store, channels. Every step is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cluster.admin import ClusterAdmin, Transactions
from cluster.background.elector import Elector
from cluster.background.health import HealthChecker
from cluster.background.intent_repair import IntentRepairer
from cluster.background.reconciler import Reconciler
from cluster.background.replicator import Replicator
from cluster.background.verifier import Verifier
from cluster.config import ProxyConfig, raft_config
from cluster.gateway.local import LocalUpstream
from cluster.gateway.server import Gateway
from cluster.metadata.api import MetadataStore
from cluster.metadata.store import RaftMetadataStore
from cluster.observability.metrics import MetricsServer, ProxyMetrics
from cluster.observability.state_metrics import LeaderWatch, StateMetrics
from cluster.proxy.coordinator import Coordinator
from cluster.proxy.nodes import NodePool
from cluster.proxy.router import Registry
from common.auth import TokenAuthInterceptor
from common.errors import UnavailableError
from common.interceptors import ErrorInterceptor
from common.tls import add_port
from gitraft.v1 import cluster_pb2_grpc, transaction_pb2_grpc

log = logging.getLogger(__name__)

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


def split_addr(addr: str) -> tuple[str, int]:
    """ "host:port" -> (host, port)."""
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def default_store(config: ProxyConfig) -> MetadataStore:
    store: MetadataStore = RaftMetadataStore(raft_config(config))
    return store


class ProxyServer:
    """One proxy process's servers and loops."""

    def __init__(self, config: ProxyConfig, store: MetadataStore | None = None) -> None:
        self.config = config
        self.store = store if store is not None else default_store(config)
        self.metrics = ProxyMetrics()
        self.registry = Registry.from_package()
        self.nodes = NodePool(
            config.node_token, {n.name: n.address for n in config.nodes}, tls=config.node_client_tls
        )
        self.replicator = Replicator(
            owner=config.name,
            store=self.store,
            nodes=self.nodes,
            metrics=self.metrics,
            workers=config.replication_workers,
            lease_seconds=config.lease_seconds,
            per_target=config.replication_per_target,
        )
        self.coordinator = Coordinator(
            proxy_name=config.name,
            store=self.store,
            registry=self.registry,
            nodes=self.nodes,
            metrics=self.metrics,
            write_intent_timeout=config.write_intent_timeout,
            read_first_response_timeout=config.read_first_response_timeout,
            on_jobs_scheduled=self.replicator.wake,
            replication_factor=config.replication_factor,
            create_on_push=config.create_on_push,
        )
        self.health_checker = HealthChecker(
            proxy_name=config.name,
            store=self.store,
            nodes=self.nodes,
            metrics=self.metrics,
            interval=config.health_interval,
            timeout=config.health_timeout,
            refresh=config.health_refresh,
            failure_threshold=config.health_failure_threshold,
        )
        self.intents = IntentRepairer(self.coordinator, config.intent_repair_interval)
        self.elector = Elector(
            self.store,
            config.failover_interval,
            on_moved=lambda _moved: self.metrics.primary_changes.labels(reason="failover").inc(),
        )
        self.reconciler = Reconciler(
            store=self.store,
            nodes=self.nodes,
            metrics=self.metrics,
            interval=config.reconcile_interval,
            batch=config.reconcile_batch,
            exists_batch=config.reconcile_exists_batch,
            dead_retry_after=config.reconcile_dead_retry_after,
            reassign_after=config.reassign_after,
            on_jobs_scheduled=self.replicator.wake,
        )
        self.verifier = Verifier(
            store=self.store,
            nodes=self.nodes,
            metrics=self.metrics,
            interval=config.verify_interval,
            tick=config.verify_tick,
            max_per_round=config.verify_max_per_round,
            on_jobs_scheduled=self.replicator.wake,
        )
        self.health = health.aio.HealthServicer()
        self.server = self._build_server()
        self.gateway: Gateway | None = None
        self.metrics_server: MetricsServer | None = None
        self.port = 0
        self.http_port = 0
        self.metrics_port = 0
        self._stop = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._store_started = False

    def _build_server(self) -> grpc.aio.Server:
        server = grpc.aio.server(
            interceptors=[TokenAuthInterceptor(self.config.tokens), ErrorInterceptor()],
            options=GRPC_OPTIONS,
        )
        admin = ClusterAdmin(
            proxy_name=self.config.name,
            store=self.store,
            local_health=lambda: dict(self.health_checker.view),
            peer_names=self.config.peer_names,
            nodes=self.nodes,
            replication_factor=self.config.replication_factor,
            verifier=self.verifier,
        )
        cluster_pb2_grpc.add_ClusterServiceServicer_to_server(admin, server)
        transaction_pb2_grpc.add_TransactionServiceServicer_to_server(Transactions(), server)
        server.add_generic_rpc_handlers((self.coordinator.handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        services = sorted({m.service for m in self.registry.methods()})
        reflection.enable_server_reflection((*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        return server

    def _gateway_tls(self) -> dict[str, Any]:
        """The gateway's TLS: its own listener's."""
        tls = self.config.server_tls
        return {"ssl_context": tls.ssl_context()} if tls.enabled else {}

    async def start(self) -> None:
        """Start everything (see module doc); returns once this proxy reports SERVING."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = add_port(self.server, self.config.listen_addr, self.config.server_tls)
        if not self.port:
            raise OSError(f"cannot listen on {self.config.listen_addr!r}")
        await self.server.start()
        if self.config.metrics_addr:
            self.metrics_server = MetricsServer(self.metrics)
            self.metrics_port = await self.metrics_server.start(*split_addr(self.config.metrics_addr))
        self._store_started = True
        await self.store.start()
        self._observe_store()
        await self._wait_ready()
        await self.health_checker.round()
        self._loops = [
            asyncio.create_task(self.health_checker.run(self._stop), name="health"),
            asyncio.create_task(self.replicator.run(self._stop), name="replicator"),
            asyncio.create_task(self.intents.run(self._stop), name="intents"),
            asyncio.create_task(self.elector.run(self._stop), name="elector"),
            asyncio.create_task(self.reconciler.run(self._stop), name="reconciler"),
            asyncio.create_task(self.verifier.run(self._stop), name="verifier"),
        ]
        if self.config.http_addr:
            self.gateway = Gateway(
                LocalUpstream(self.coordinator),
                self.config.token,
                self.config.tokens,
                on_missing_repository=self.coordinator.repositories.on_missing_repository,
                **self._gateway_tls(),
            )
            self.http_port = await self.gateway.start(*split_addr(self.config.http_addr))
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "proxy serving",
            extra={
                "proxy": self.config.name,
                "port": self.port,
                "http_port": self.http_port,
                "metrics_port": self.metrics_port,
                "leader": self.store.status().leader_address,
            },
        )

    async def stop(self) -> None:
        """Stop everything started so far; bounded by about shutdown_grace + a few seconds."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.gateway.stop(), 2.0)
        await self.server.stop(self.config.shutdown_grace)
        self._stop.set()
        if self._loops:
            _, pending = await asyncio.wait(self._loops, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._loops, return_exceptions=True)
        if self._store_started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.stop(), 5.0)
        await self.nodes.close()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        log.info("proxy stopped", extra={"proxy": self.config.name})

    def _observe_store(self) -> None:
        """Hook the Raft store's figures into /metrics (a Raft-backed store only)."""
        if not isinstance(self.store, RaftMetadataStore):
            return
        self.store.on_commit = self.metrics.commit_duration.observe
        self.store.raft.add_tick_callback(LeaderWatch(self.store.raft.leader, self.metrics).tick)
        state = StateMetrics(
            self.store, self.metrics, self.config.peer_names, self.config.write_intent_timeout
        )
        self.metrics.on_scrape(state.refresh)

    async def _wait_ready(self) -> None:
        """Wait for a Raft leader and record this proxy's nodes in Raft (idempotent);
        UnavailableError after `ready_timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.ready_timeout
        while True:
            try:
                # Both retried until ready_timeout: a leader lost between the barrier and
                # the first command (an election under load) must not stop the proxy.
                await self.store.barrier()
                await self._register_nodes()
                return
            except UnavailableError as exc:
                if loop.time() >= deadline:
                    raise UnavailableError(f"no raft leader within {self.config.ready_timeout:g}s") from exc
                log.info("waiting for a raft leader", extra={"error": str(exc)})

    async def _register_nodes(self) -> None:
        known = {s.name: s.address for s in await self.store.storages()}
        for node in self.config.nodes:
            if known.get(node.name) != node.address:
                await self.store.register_storage(node.name, node.address)
        for storage in await self.store.storages():
            self.nodes.set_address(storage.name, storage.address)

    async def _set_health(self, status: Any) -> None:
        for service in ("", *sorted({m.service for m in self.registry.methods()})):
            await self.health.set(service, status)
