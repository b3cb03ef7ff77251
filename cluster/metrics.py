"""The proxy's Prometheus metrics, on a registry of its own, and the /metrics endpoint.

    gitraft_proxy_rpcs_total{method, route, code}          every RPC the proxy answered
    gitraft_proxy_rpc_duration_seconds{method, route}      their latency
    gitraft_proxy_reads_total{storage}                     accessors served by each replica
    gitraft_proxy_writes_total{storage, outcome}           mutators sent to each primary
    gitraft_replication_jobs_total{change, outcome}        jobs this proxy's workers ran
    gitraft_replication_duration_seconds{change}           their latency
    gitraft_proxy_node_healthy{storage}                    this proxy's own view (1/0)
    gitraft_proxy_intents_repaired_total{action}           abandoned intents repaired here
    gitraft_replication_queue_depth{state}                 ready/failed/in_progress jobs

Tests read `gitraft_proxy_reads_total` by scraping /metrics (see `parse_counter`).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ProxyMetrics:
    """All metrics of one proxy."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpcs = Counter(
            "gitraft_proxy_rpcs", "RPCs answered by the proxy", ["method", "route", "code"], registry=r
        )
        self.rpc_duration = Histogram(
            "gitraft_proxy_rpc_duration_seconds",
            "RPC latency at the proxy",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.reads = Counter(
            "gitraft_proxy_reads", "Accessors routed to each replica", ["storage"], registry=r
        )
        self.writes = Counter(
            "gitraft_proxy_writes", "Mutators routed to each primary", ["storage", "outcome"], registry=r
        )
        self.replication_jobs = Counter(
            "gitraft_replication_jobs", "Replication jobs run here", ["change", "outcome"], registry=r
        )
        self.replication_duration = Histogram(
            "gitraft_replication_duration_seconds",
            "Replication job latency",
            ["change"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.node_healthy = Gauge(
            "gitraft_proxy_node_healthy", "This proxy's health view of each node", ["storage"], registry=r
        )
        self.queue_depth = Gauge(
            "gitraft_replication_queue_depth",
            "Replication jobs waiting or running, by state (cluster-wide, this proxy's view)",
            ["state"],
            registry=r,
        )
        self.intents_repaired = Counter(
            "gitraft_proxy_intents_repaired", "Abandoned write intents repaired", ["action"], registry=r
        )
        # Reconciler, verifier and dead jobs (cluster.reconciler, cluster.verifier).
        self.jobs_dead = Counter(
            "gitraft_replication_jobs_dead", "Replication jobs that ended dead here", ["change"], registry=r
        )
        self.reconciler_jobs = Counter(
            "gitraft_reconciler_jobs_scheduled",
            "Repair jobs the reconciler scheduled",
            ["reason"],
            registry=r,
        )
        self.replicas_missing = Counter(
            "gitraft_reconciler_replicas_missing", "Replicas found missing on disk", registry=r
        )
        self.verifier_checked = Counter(
            "gitraft_verifier_replicas_checked", "Replicas whose checksum the verifier compared", registry=r
        )
        self.verifier_mismatches = Counter(
            "gitraft_verifier_mismatches", "Replicas found differing from the primary", registry=r
        )
        self.verifier_repairs = Counter(
            "gitraft_verifier_repairs_scheduled", "Repair jobs scheduled by the verifier", registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """Serves GET /metrics over HTTP (aiohttp)."""

    def __init__(self, metrics: ProxyMetrics) -> None:
        self._metrics = metrics
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port."""
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.exposition(), content_type="text/plain", charset="utf-8")


def parse_counter(exposition: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of the counter `name` (without `_total`) in a /metrics text: labels -> value."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_total":
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out
