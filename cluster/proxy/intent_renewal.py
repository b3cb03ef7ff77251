"""Keeping a streaming write's intent alive while it makes progress (long pushes).

A write intent has a deadline; after it the Raft leader repairs the intent as abandoned
(cluster.background.intent_repair). A push may take longer than `write_intent_timeout`, so while the
node call of a streaming mutator runs, `IntentKeeper`:

- notes progress: every request message relayed to the node and every response message
  relayed back;
- every quarter of the intent's lifetime, if there was progress since its last renewal,
  renews the intent (`renew_intent`: deadline = now + lifetime) and moves the call's
  cutoff to `margin` before that deadline;
- ends the node call (`DeadlineExceededError`) at the cutoff - reached when no bytes
  flowed for about a lifetime, or at once when the intent was closed meanwhile (a
  repair: the write will be fenced) - and relays no request message after it, so
  the call does not outlive the deadline the repair goes by.

What a proxy cannot bound is a node that received the whole request before the proxy
was paused and finishes the write only after the intent's deadline and its repair
(a unary mutator's node-side gRPC deadline covers that case; a renewable stream has
none): when the proxy resumes, its `finish_write` is fenced and the replica repaired;
if it never reports, the write stays on the primary unrecorded until a checksum
comparison (the verifier) finds it.

A proxy that dies stops renewing: its intent expires `lifetime` after the last renewal
and is repaired then. Renewal is a Raft command per quarter lifetime per write in
flight, nothing per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from cluster.metadata.api import MetadataStore
from common.errors import DeadlineExceededError, GitraftError

log = logging.getLogger(__name__)


class IntentKeeper:
    """Renews one intent while its node call makes progress; bounds the call."""

    def __init__(
        self,
        store: MetadataStore,
        intent_id: str,
        lifetime: float,
        margin: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.intent_id = intent_id
        self.lifetime = lifetime
        self.margin = margin
        self.clock = clock
        self.monotonic = monotonic
        started = monotonic()
        # The intent was begun just before: its deadline is about `lifetime` from now.
        self.cutoff = started + lifetime - margin
        self.last_progress = started
        self.last_renewal = started
        self.renewals = 0
        self.closed = False

    def note(self) -> None:
        """Bytes moved: the call makes progress."""
        self.last_progress = self.monotonic()

    async def relay(self, messages: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The client's request messages, each noted as progress; DeadlineExceededError
        (which cancels the node call) instead of a message that comes after the cutoff,
        e.g. when this proxy resumes from a pause longer than the intent's lifetime:
        the intent may have been repaired, the rest of the write must not reach the node."""
        async for message in messages:
            if self.monotonic() >= self.cutoff:
                raise DeadlineExceededError(self._why())
            self.note()
            yield message

    async def renew_once(self) -> None:
        """Renew the intent if the call progressed since the last renewal."""
        if self.last_progress <= self.last_renewal or self.closed:
            return
        started = self.monotonic()
        try:
            still_open = await self.store.renew_intent(
                self.intent_id, self.clock() + self.lifetime, self.clock()
            )
        except GitraftError as exc:  # Raft unavailable: the cutoff stays where it was
            log.info("write intent not renewed", extra={"intent_id": self.intent_id, "error": str(exc)})
            return
        if not still_open:
            self.closed = True
            self.cutoff = self.monotonic()
            return
        self.renewals += 1
        self.last_renewal = started
        self.cutoff = started + self.lifetime - self.margin

    async def run(self) -> None:
        """Renew every quarter lifetime until cancelled."""
        while True:
            await asyncio.sleep(self.lifetime / 4)
            await self.renew_once()

    async def bounded(self, responses: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Relay the node's responses, noting progress, until the cutoff (then the call
        is cancelled and DeadlineExceededError raised)."""
        iterator = responses.__aiter__()
        while True:
            step: asyncio.Future[bytes] = asyncio.ensure_future(iterator.__anext__())
            try:
                while not step.done():
                    remaining = self.cutoff - self.monotonic()
                    if remaining <= 0:
                        raise DeadlineExceededError(self._why())
                    await asyncio.wait({step}, timeout=min(remaining, self.lifetime / 4))
                chunk = step.result()
            except StopAsyncIteration:
                return
            finally:
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(BaseException):
                        await step
            self.note()
            yield chunk

    def _why(self) -> str:
        if self.closed:
            return "write intent was closed while the write ran (repaired); not acknowledged"
        idle = self.monotonic() - self.last_progress
        return f"write made no progress for {idle:.0f}s; not acknowledged"
