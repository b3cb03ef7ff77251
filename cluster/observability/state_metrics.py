"""Gauges evaluated at scrape time from this proxy's Raft member and applied state.

`StateMetrics.refresh()` (registered with `ProxyMetrics.on_scrape`) reads pysyncobj's
status, the Raft files' sizes and a few cheap SQL aggregates of the applied metadata,
and sets the gauges declared in `cluster.observability.metrics`. It reads local state without a
barrier: a follower's figures lag the leader's by about one heartbeat. Every proxy
serves them, so alert rules aggregate across proxies (`max by (...)`).

`LeaderWatch.tick()` runs on pysyncobj's tick thread and counts leader changes (a
scrape would miss two changes between scrapes).

No label takes an unbounded value: repository paths appear only in
`gitraft_repository_unavailable`, at most UNAVAILABLE_PATHS of them (sorted), the rest
summed under `repository="_other"`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cluster.metadata import queries
from cluster.metadata.api import JobState
from cluster.observability.metrics import ProxyMetrics

if TYPE_CHECKING:
    from cluster.metadata.store import RaftMetadataStore

UNAVAILABLE_PATHS = 20
OTHER = "_other"
_ROLES = ("follower", "candidate", "leader")
_QUEUE_STATES = (JobState.READY, JobState.IN_PROGRESS, JobState.FAILED, JobState.DEAD)
_AGE_STATES = (JobState.READY, JobState.IN_PROGRESS, JobState.FAILED)


class LeaderWatch:
    """Counts changes of the Raft leader this member knows (called on the tick thread)."""

    def __init__(self, leader: Callable[[], str], metrics: ProxyMetrics) -> None:
        self._leader = leader
        self._metrics = metrics
        self._last: str | None = None
        self._lock = threading.Lock()

    def tick(self) -> None:
        """Compare the current leader with the last one seen; never raises."""
        try:
            current = self._leader()
        except Exception:
            return
        with self._lock:
            if current and current != self._last:
                if self._last is not None:
                    self._metrics.leader_changes.inc()
                self._last = current


class StateMetrics:
    """Sets the scrape-time gauges of one proxy from its store."""

    def __init__(
        self,
        store: RaftMetadataStore,
        metrics: ProxyMetrics,
        peer_names: dict[str, str] | None = None,
        write_intent_timeout: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.write_intent_timeout = write_intent_timeout
        self.peer_names = dict(peer_names or {})
        self.clock = clock

    async def refresh(self) -> None:
        """Set every gauge; raises what the store raises (the caller logs it)."""
        self._raft()
        now = self.clock()
        await self._dataloss(now)
        await self._health(now)
        await self._queue(now)
        await self._intents(now)

    def _raft(self) -> None:
        m, status = self.metrics, self.store.status()
        for role in _ROLES:
            m.raft_role.labels(role=role).set(1 if status.role == role else 0)
        m.raft_leader.set(1 if status.role == "leader" else 0)
        m.raft_has_leader.set(1 if status.leader_address else 0)
        m.raft_term.set(status.term)
        m.raft_commit_index.set(status.commit_index)
        m.raft_applied_index.set(status.applied_index)
        for address, connected in status.peers.items():
            peer = self.peer_names.get(address, address)
            m.raft_peer_connected.labels(peer=peer).set(1 if connected else 0)
        raw = self.store.raft.status()
        m.raft_has_quorum.set(1 if raw.get("has_quorum") else 0)
        m.raft_log_entries.set(int(raw.get("log_len", 0)))
        config = self.store.config
        m.raft_snapshot_bytes.set(_size(config.dump_path))
        m.raft_journal_bytes.set(_size(config.journal_path))

    async def _dataloss(self, now: float) -> None:
        m = self.metrics
        unavailable, partial = await self.store.dataloss(now, True)
        m.repositories.set(await self.store.repository_count())  # a COUNT, never a load of every row
        m.repositories_unavailable.set(len(unavailable))
        m.repositories_partial.set(len(partial))
        paths = sorted(r.relative_path for r in unavailable)
        m.repository_unavailable.clear()
        for path in paths[:UNAVAILABLE_PATHS]:
            m.repository_unavailable.labels(repository=path).set(1)
        m.repository_unavailable.labels(repository=OTHER).set(len(paths[UNAVAILABLE_PATHS:]))

    async def _health(self, now: float) -> None:
        m = self.metrics
        healthy = await self.store.healthy_storages(now)
        for storage in await self.store.storages():
            m.cluster_node_healthy.labels(storage=storage.name).set(1 if storage.name in healthy else 0)
        window = self.store.config.health_window
        for proxy, votes in (await self.store.health_votes()).items():
            for name, vote in votes.items():
                m.health_vote.labels(proxy=proxy, storage=name).set(1 if vote.healthy else 0)
            newest = max((v.updated_at for v in votes.values()), default=0.0)
            m.proxy_live.labels(proxy=proxy).set(1 if newest > now - window else 0)

    async def _queue(self, now: float) -> None:
        m = self.metrics
        depth = await self.store.queue_depth()
        targets = {s.name for s in await self.store.storages()} | {t for _, t in depth}
        m.queue_depth.clear()
        for state in _QUEUE_STATES:
            for target in sorted(targets):
                m.queue_depth.labels(state=str(state), target=target).set(depth.get((str(state), target), 0))
        oldest = await queries.oldest_jobs(self.store.db)
        for state in _AGE_STATES:
            created = oldest.get(str(state))
            m.oldest_job_age.labels(state=str(state)).set(
                max(0.0, now - created) if created is not None else 0
            )

    async def _intents(self, now: float) -> None:
        m = self.metrics
        count, expired, first = await queries.open_intent_summary(self.store.db, now)
        m.intents_open.set(count)
        m.intents_expired.set(expired)
        # An intent's start is not stored: its deadline minus this proxy's configured
        # timeout stands for it (exact while every proxy uses the same timeout).
        age = now - (first - self.write_intent_timeout) if first is not None else 0.0
        m.intent_oldest_age.set(max(0.0, age))


def _size(path: Any) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
