"""The coordinator's write path: a mutator under a write intent, fenced at its end.

Look up, `begin_write` (Raft; the route is re-checked on the state it applied, so no
barrier is needed) -> primary -> `finish_write` (Raft: generation bump + update jobs)
-> the client's answer. In a response stream the last message is held back until
`finish_write` has committed, so the call's end (and the gateway's end of the HTTP
response) never precedes the metadata. A node error closes the intent with the primary
failed, then compares the primary's checksum with the up-to-date secondaries and bumps
the generation unless all are equal (also when no secondary is up to date: a lagging
one could otherwise copy the half-changed primary and end up at the same generation
with other content). If the proxy dies anywhere in between, the intent stays open and
the leader repairs it (cluster.background.intent_repair).

`finish_write` applies the fence (DESIGN.md invariant 8): a write whose primary moved,
or that another write overtook, while it ran is answered FAILED_PRECONDITION ("write
not acknowledged: ...; retry"), never acknowledged.

The node call is bounded to end before the intent's deadline, so a repair never runs
while the write it repairs can still change the primary: a unary mutator takes at most
about `write_intent_timeout` (or the client's own longer deadline); a streaming one (a
push) renews its intent while bytes flow and is cut off only after about that long
without progress (cluster.proxy.intent_renewal). A mutator whose primary's channel
cannot connect within a second is refused (UNAVAILABLE) before its intent is written.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import message

from cluster.metadata.api import Repository
from cluster.proxy.calls import Calls
from cluster.proxy.forwarding import rewrite, time_remaining
from cluster.proxy.intent_renewal import IntentKeeper
from cluster.proxy.router import MethodInfo, route_mutator
from common.errors import FailedPreconditionError, GitraftError, NotFoundError, UnavailableError
from common.logs import bind_fields

log = logging.getLogger(__name__)

# Bound on the checksum comparison after a failed mutator.
CHECKSUM_TIMEOUT = 10.0
# Seconds between the end of a mutator's node call and its intent's deadline (at most
# a quarter of write_intent_timeout).
INTENT_MARGIN = 5.0

# What a write does when its node call failed (or was cancelled) with the exception.
OnFailure = Callable[[BaseException], Awaitable[None]]


@dataclass(frozen=True)
class OpenIntent:
    intent_id: str
    # Seconds the node call may take unless the intent is renewed (see IntentKeeper): it
    # must end before the intent can be repaired.
    timeout: float
    # Seconds from its begin to the intent's deadline.
    lifetime: float = 0.0


class WritePath(Calls):
    """Mutators under a write intent (see module doc)."""

    async def mutate(self, info: MethodInfo, request: message.Message, path: str, context: Any) -> bytes:
        """A unary mutator: route, open its intent, forward, settle."""
        repo, primary, intent = await self.open_write(path, info, context)

        async def failed(exc: BaseException) -> None:
            await self.after_failed_write(intent.intent_id, repo, primary, exc)

        return await self.write_unary(info, request, repo, primary, intent, context, failed)

    async def write_unary(
        self,
        info: MethodInfo,
        request: message.Message,
        repo: Repository,
        primary: str,
        intent: OpenIntent,
        context: Any,
        on_failure: OnFailure,
    ) -> bytes:
        """Forward a unary mutator to `primary` under the open `intent`: `finish_write`
        (shielded) before the answer, or `on_failure` and the error."""
        try:
            forwarded = rewrite(info, request, repo, primary)
            response = await self.call_unary(info, primary, forwarded, context, intent.timeout)
        except BaseException as exc:
            await on_failure(exc)
            raise
        await asyncio.shield(self.finish_write(intent.intent_id, primary))
        return response

    async def write_stream(
        self,
        info: MethodInfo,
        request: message.Message,
        path: str,
        rest: AsyncIterator[bytes] | None,
        context: Any,
    ) -> AsyncIterator[bytes]:
        """A response-streaming mutator: its intent renewed while bytes flow, its last
        response message held back until `finish_write` committed."""
        repo, primary, intent = await self.open_write(path, info, context)
        held: bytes | None = None
        keeper = IntentKeeper(
            self.store, intent.intent_id, intent.lifetime, intent.lifetime - intent.timeout, self.clock
        )
        renewing = asyncio.get_running_loop().create_task(keeper.run())
        try:
            first = rewrite(info, request, repo, primary)
            requests = keeper.relay(rest) if rest is not None else None
            async for chunk in keeper.bounded(self.call_stream(info, primary, first, requests, context)):
                if held is not None:
                    yield held
                held = chunk
        except BaseException as exc:
            await self.after_failed_write(intent.intent_id, repo, primary, exc)
            raise
        finally:
            renewing.cancel()
        await asyncio.shield(self.finish_write(intent.intent_id, primary))
        if held is not None:
            yield held

    async def open_write(
        self, relative_path: str, info: MethodInfo, context: Any
    ) -> tuple[Repository, str, OpenIntent]:
        """Route a mutator and commit its intent: (repository, primary, intent).

        No barrier: the route is chosen on local state, then checked again on the state
        right after `begin_write` applied here, which includes every command committed
        before it. When the check disagrees (the primary moved, the repository went),
        the intent is closed without change and routing starts over once. A refusal is
        only ever decided after a barrier."""
        bind_fields(repository=relative_path)
        repo = await self.store.get_repository(relative_path) or await self._found(relative_path, info)
        for _ in range(2):
            primary = await self._primary_of(repo, stale=True)
            if primary is None:  # refuse only on fresh state
                repo = await self._found(relative_path, info)
                primary = await self._primary_of(repo, stale=False)
                assert primary is not None
            await self.nodes.connect(primary)  # unreachable: refused before any intent
            try:
                intent = await self.begin_write(repo, primary, context)
            except NotFoundError:  # the local view was stale: it is gone (or re-created)
                repo = await self._found(relative_path, info)
                continue
            repo, agreed = await self._recheck(repo, relative_path, primary, intent)
            if agreed:
                return repo, primary, intent
        raise UnavailableError(f"primary of repository {relative_path!r} is changing; retry")

    async def _found(self, relative_path: str, info: MethodInfo) -> Repository:
        repo = await self.lookup(relative_path, info)
        assert repo is not None  # a mutator is never RepositoryExists
        return repo

    async def _primary_of(self, repo: Repository, *, stale: bool) -> str | None:
        """The primary `route_mutator` picks on the current health; None for a refusal
        when `repo` is `stale` (to be decided again on fresh state), else its error."""
        try:
            return route_mutator(repo, await self.store.healthy_storages(self.clock())).primary
        except GitraftError:
            if stale:
                return None
            raise

    async def _recheck(
        self, repo: Repository, relative_path: str, primary: str, intent: OpenIntent
    ) -> tuple[Repository, bool]:
        """(the repository as `begin_write` left it, whether its route is still `primary`).
        Unless it is, the intent is closed without change; NotFoundError when the
        repository went or moved."""
        agreed = False
        # One hand-off to the database thread for both reads.
        fresh, healthy = await asyncio.gather(
            self.store.get_repository_by_id(repo.repository_id), self.store.healthy_storages(self.clock())
        )
        try:
            if fresh is None or fresh.relative_path != relative_path:
                raise NotFoundError(f"repository not found: {relative_path!r}")
            agreed = route_mutator(fresh, healthy).primary == primary
            return fresh, agreed
        finally:
            if not agreed:
                await self.store.finish_write(intent.intent_id, [], [], self.clock())

    async def begin_write(self, repo: Repository, primary: str, context: Any) -> OpenIntent:
        """Commit a write intent for `primary` in Raft.

        The intent's deadline is `write_intent_timeout` from now, or the client's deadline
        plus a margin when that is later; the node call must end `margin` before it (see
        OpenIntent.timeout), so that the leader's repair, which starts only after the
        deadline, sees the write's effect on the primary if there is any."""
        intent_id = uuid.uuid4().hex
        bind_fields(storage=primary)
        margin = min(INTENT_MARGIN, self.write_intent_timeout / 4)
        remaining = time_remaining(context) or 0.0
        lifetime = max(self.write_intent_timeout, remaining + 2 * margin)
        await self.store.begin_write(
            intent_id, repo.repository_id, [primary], self.proxy_name, self.clock() + lifetime
        )
        return OpenIntent(intent_id, lifetime - margin, lifetime)

    async def finish_write(self, intent_id: str, primary: str) -> None:
        """Record a successful write on `primary` (callers shield it: a client going away
        after the node wrote must not leave the intent to the repair).

        FailedPreconditionError when the fence refused it (the primary moved, or another
        write committed, while it ran: DESIGN.md invariant 8): the write is not
        acknowledged and `primary`'s replica is being repaired."""
        result = await self.store.finish_write(intent_id, [primary], [], self.clock())
        if result.scheduled:
            self.on_jobs_scheduled()
        if result.fenced:
            self.metrics.writes.labels(storage=primary, outcome="fenced").inc()
            log.warning(
                "write fenced", extra={"intent_id": intent_id, "storage": primary, "reason": result.fenced}
            )
            raise FailedPreconditionError(f"write not acknowledged: {result.fenced}; retry")
        self.metrics.writes.labels(storage=primary, outcome="ok").inc()

    async def after_failed_write(
        self, intent_id: str, repo: Repository, primary: str, exc: BaseException
    ) -> None:
        """Close the intent as failed, then bump the generation if the primary changed anyway.

        On cancellation this runs in a task of its own; when Raft or the primary cannot
        be reached the intent (or the failed mark) is left for the leader's repair."""
        self.metrics.writes.labels(storage=primary, outcome="error").inc()
        work = self._close_failed(intent_id, repo, primary)
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            _spawn(work)
            return
        try:
            await asyncio.wait_for(work, CHECKSUM_TIMEOUT)
        except Exception as err:
            log.warning("could not settle a failed write", extra={"intent_id": intent_id, "error": str(err)})

    async def _close_failed(self, intent_id: str, repo: Repository, primary: str) -> None:
        await self.store.finish_write(intent_id, [], [primary], self.clock())
        if not await self.primary_matches_secondaries(repo, primary):
            log.warning(
                "failed write changed the primary; bumping its generation",
                extra={"repository": repo.relative_path, "storage": primary},
            )
            bump = await self.begin_write(repo, primary, None)
            await self.finish_write(bump.intent_id, primary)

    async def primary_matches_secondaries(self, repo: Repository, primary: str) -> bool:
        """Whether `primary`'s checksum equals that of every reachable up-to-date secondary
        (at least one). False when one differs or none can be compared (nothing shows the
        primary unchanged); raises when the primary's checksum cannot be read."""
        fresh = await self.store.get_repository_by_id(repo.repository_id) or repo
        others = [s for s in fresh.up_to_date() if s != primary]
        mine, *theirs = await asyncio.gather(
            self.checksum(fresh, primary),
            *(self.checksum(fresh, s) for s in others),
            return_exceptions=True,
        )
        if isinstance(mine, BaseException):
            raise mine
        compared = [t for t in theirs if not isinstance(t, BaseException)]
        return bool(compared) and all(t == mine for t in compared)


_background: set[asyncio.Task[Any]] = set()


def _spawn(work: Awaitable[Any]) -> None:
    async def run() -> None:
        try:
            await work
        except Exception as exc:
            log.warning("background settle failed", extra={"error": str(exc)})

    task = asyncio.get_running_loop().create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)
