"""Repair of abandoned write intents (run by the Raft leader proxy only).

An intent still open after its deadline belongs to a proxy that died (or lost Raft)
between the node's write and `finish_write`. The write may or may not have reached the
primary, so `IntentRepairer.repair(intent)` compares the primary's checksum with the
up-to-date secondaries':

- equal: nothing changed on the primary that the others lack -> close the intent
  without a generation change (`finish_write(succeeded=[], failed=[])`);
- different, or not comparable (primary unreachable, no reachable up-to-date secondary): treat
  the write as done on the primary -> `finish_write(succeeded=[primary])`, which bumps
  its generation and schedules `update` jobs so every replica converges to it.

`finish_write` is idempotent on the intent id, so two leaders in quick succession cannot
apply it twice. The repair's `finish_write` carries `repair`: it is refused when the
intent was renewed since this leader saw it expired (its proxy is alive and the write
makes progress), and the write's own proxy reporting success afterwards is fenced (not
acknowledged; the primary is repaired), since the write may have landed after the
checksums were compared. A "bumped" repair whose primary moved meanwhile is fenced too
("fenced": the primary's replica is repaired from a copy without the write).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cluster.background.periodic import run_periodically
from cluster.metadata.api import WriteIntent
from cluster.proxy.writes import WritePath
from common.errors import GitraftError

log = logging.getLogger(__name__)


class IntentRepairer:
    def __init__(
        self, coordinator: WritePath, interval: float = 1.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._c = coordinator
        self.interval = interval
        self.clock = clock

    async def repair(self, intent: WriteIntent) -> str:
        """Close one abandoned intent (see module doc); returns "unchanged", "bumped" or
        "fenced". FailedPreconditionError when it was renewed meanwhile."""
        c = self._c
        repo = await c.store.get_repository_by_id(intent.repository_id)
        primary = intent.storages[0] if intent.storages else ""
        action = "bumped"
        if repo is None or not primary:
            action = "unchanged"
        else:
            try:
                if await c.primary_matches_secondaries(repo, primary):
                    action = "unchanged"
            except GitraftError as exc:
                log.info("intent repair: checksums not comparable", extra={"error": str(exc)})
        succeeded = [primary] if action == "bumped" else []
        result = await c.store.finish_write(intent.intent_id, succeeded, [], self.clock(), repair=True)
        if result.fenced:
            action = "fenced"
        c.metrics.intents_repaired.labels(action=action).inc()
        log.warning(
            "abandoned write intent repaired",
            extra={
                "intent_id": intent.intent_id,
                "repository_id": intent.repository_id,
                "proxy": intent.proxy,
                "action": action,
                "generation": result.generation,
            },
        )
        if result.scheduled:
            c.on_jobs_scheduled()
        return action

    async def round(self) -> int:
        """Repair every expired intent, if this proxy leads; returns how many."""
        if not self._c.store.is_leader():
            return 0
        done = 0
        for intent in await self._c.store.expired_intents(self.clock()):
            try:
                await self.repair(intent)
                done += 1
            except GitraftError as exc:
                log.info("intent repair failed", extra={"intent_id": intent.intent_id, "error": str(exc)})
        return done

    async def run(self, stop: asyncio.Event) -> None:
        await run_periodically("intent repair", self.round, stop, self.interval)
