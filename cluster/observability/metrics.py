"""The proxy's Prometheus metrics, on a registry of its own, and the /metrics endpoint.

    gitraft_proxy_rpcs_total{method, route, code}          every RPC the proxy answered
    gitraft_proxy_rpc_duration_seconds{method, route}      their latency
    gitraft_proxy_reads_total{storage}                     accessors served by each replica
    gitraft_proxy_writes_total{storage, outcome}           mutators sent to each primary
    gitraft_replication_jobs_total{change, outcome}        jobs this proxy's workers ran
    gitraft_replication_duration_seconds{change}           their latency
    gitraft_proxy_node_healthy{storage}                    this proxy's own view (1/0)
    gitraft_proxy_intents_repaired_total{action}           abandoned intents repaired here
    gitraft_replication_delay_seconds{change}              job queued -> first started
    gitraft_primary_changes_total{reason}                  primaries this proxy moved
    gitraft_raft_leader_changes_total                      leader changes seen by this member
    gitraft_raft_commit_duration_seconds                   submit -> applied here, per log entry

Evaluated at each scrape from this proxy's applied Raft state (`cluster.observability.state_metrics`):

    gitraft_raft_role{role} (one-hot), gitraft_raft_leader, gitraft_raft_has_leader,
    gitraft_raft_has_quorum, gitraft_raft_term, gitraft_raft_commit_index,
    gitraft_raft_applied_index, gitraft_raft_peer_connected{peer}, gitraft_raft_log_entries,
    gitraft_raft_snapshot_bytes, gitraft_raft_journal_bytes
    gitraft_repositories, gitraft_repositories_unavailable,
    gitraft_repositories_partially_available,
    gitraft_repository_unavailable{repository}   at most UNAVAILABLE_PATHS paths, the rest
                                                 counted under repository="_other"
    gitraft_write_intents_open, gitraft_write_intents_expired,
    gitraft_write_intent_oldest_age_seconds
    gitraft_replication_queue_depth{state, target}  every state but completed, no cap
    gitraft_replication_oldest_job_age_seconds{state}  ready / failed / in_progress
    gitraft_node_healthy{storage}                the cluster's verdict (majority of live proxies)
    gitraft_health_vote{proxy, storage}          each proxy's latest vote as recorded in Raft
    gitraft_proxy_live{proxy}                    whether the cluster counts a proxy as live

Plus the process collectors (`process_*`, `python_*`). Label values are bounded: RPC
methods, storages, proxies, states, changes and reasons come from config or enums.

Tests read `gitraft_proxy_reads_total` by scraping /metrics (see `parse_counter`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Seconds a scrape waits for the state gauges before serving what it has.
REFRESH_TIMEOUT = 3.0


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
        self.intents_repaired = Counter(
            "gitraft_proxy_intents_repaired", "Abandoned write intents repaired", ["action"], registry=r
        )
        # Reconciler, verifier and dead jobs (cluster.background.reconciler, cluster.background.verifier).
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
        self.replication_delay = Histogram(
            "gitraft_replication_delay_seconds",
            "Time from a job's creation to its first start",
            ["change"],
            buckets=_DELAY_BUCKETS,
            registry=r,
        )
        self.primary_changes = Counter(
            "gitraft_primary_changes", "Repository primaries moved by this proxy", ["reason"], registry=r
        )
        self.leader_changes = Counter(
            "gitraft_raft_leader_changes", "Raft leader changes seen by this member", registry=r
        )
        self.commit_duration = Histogram(
            "gitraft_raft_commit_duration_seconds",
            "Raft log entry latency: submitted until applied on this proxy",
            buckets=_BUCKETS,
            registry=r,
        )
        # Series that exist from the start (0), so rate() and increase() see the first event.
        self.primary_changes.labels(reason="failover")
        for action in ("unchanged", "bumped"):
            self.intents_repaired.labels(action=action)
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        self._state_gauges(r)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def _state_gauges(self, r: CollectorRegistry) -> None:
        """Gauges set at scrape time by `cluster.observability.state_metrics.StateMetrics.refresh`."""

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, list(labels), registry=r)

        self.raft_role = gauge("gitraft_raft_role", "This member's Raft role (one-hot)", ("role",))
        self.raft_leader = gauge("gitraft_raft_leader", "1 when this proxy is the Raft leader")
        self.raft_has_leader = gauge("gitraft_raft_has_leader", "1 when this member knows a leader")
        self.raft_has_quorum = gauge("gitraft_raft_has_quorum", "1 when this member has quorum")
        self.raft_term = gauge("gitraft_raft_term", "Current Raft term")
        self.raft_commit_index = gauge("gitraft_raft_commit_index", "Raft commit index")
        self.raft_applied_index = gauge("gitraft_raft_applied_index", "Raft index applied here")
        self.raft_peer_connected = gauge(
            "gitraft_raft_peer_connected", "1 when this member is connected to the peer", ("peer",)
        )
        self.raft_log_entries = gauge("gitraft_raft_log_entries", "Entries in the Raft log (in memory)")
        self.raft_snapshot_bytes = gauge("gitraft_raft_snapshot_bytes", "Size of the Raft snapshot file")
        self.raft_journal_bytes = gauge("gitraft_raft_journal_bytes", "Size of the Raft journal file")
        self.repositories = gauge("gitraft_repositories", "Repositories in the cluster")
        self.repositories_unavailable = gauge(
            "gitraft_repositories_unavailable",
            "Repositories without a healthy up-to-date replica (data loss pending)",
        )
        self.repositories_partial = gauge(
            "gitraft_repositories_partially_available",
            "Repositories with an outdated or unhealthy replica",
        )
        self.repository_unavailable = gauge(
            "gitraft_repository_unavailable",
            "1 per unavailable repository (a capped list; the rest counted under _other)",
            ("repository",),
        )
        self.intents_open = gauge("gitraft_write_intents_open", "Write intents not finished")
        self.intents_expired = gauge(
            "gitraft_write_intents_expired", "Write intents past their deadline, not yet repaired"
        )
        self.intent_oldest_age = gauge(
            "gitraft_write_intent_oldest_age_seconds", "Age of the oldest open write intent"
        )
        self.queue_depth = gauge(
            "gitraft_replication_queue_depth",
            "Replication jobs by state and target (cluster-wide; completed ones omitted)",
            ("state", "target"),
        )
        self.oldest_job_age = gauge(
            "gitraft_replication_oldest_job_age_seconds",
            "Age of the oldest replication job in a state",
            ("state",),
        )
        self.cluster_node_healthy = gauge(
            "gitraft_node_healthy", "Cluster verdict on each node (majority of live proxies)", ("storage",)
        )
        self.health_vote = gauge(
            "gitraft_health_vote",
            "Each proxy's latest health vote on each node, from Raft",
            ("proxy", "storage"),
        )
        self.proxy_live = gauge(
            "gitraft_proxy_live", "1 while the cluster counts the proxy live (fresh votes)", ("proxy",)
        )

    def on_scrape(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Run `refresh` before each exposition served by MetricsServer."""
        self._refreshers.append(refresh)

    async def refresh(self) -> None:
        """Run the scrape-time refreshers; a failing one is logged and its gauges keep
        their last values (a scrape must not fail because Raft is unavailable)."""
        for refresh in self._refreshers:
            try:
                await asyncio.wait_for(refresh(), REFRESH_TIMEOUT)
            except Exception as exc:
                log.debug("metrics refresh failed", extra={"error": str(exc)})

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
        await self._metrics.refresh()
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
