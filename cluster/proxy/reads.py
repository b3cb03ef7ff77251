"""The coordinator's read path: accessors on one replica, maintenance on every replica.

- accessor: shared barrier, look up, one healthy up-to-date replica at random (one under
  no open write intent when there is such: route_accessor). It is tried again on
  another such replica, at most READ_ATTEMPTS times in all, when it fails with
  UNAVAILABLE, or with NOT_FOUND for a replica missing on disk, before anything was
  relayed (and, for a request stream, before more than its first message was sent).
  While another replica could serve it, a node silent for `read_first_response_timeout`
  counts as UNAVAILABLE; the last candidate is waited for as long as the client allows.
- speculative accessor: a response-streaming read with no request stream, or a
  HALF_DUPLEX one whose request fits SPECULATIVE_BODY, starts its node call on the route
  of the proxy's local state *while* the barrier runs, and relays nothing until the
  barrier is done and `speculation_holds` on the fresh state; otherwise (or when that
  call fails before its first message) the call is dropped and the read runs as above,
  its request replayed. See speculation_holds for why such a read sees every write
  acknowledged before it began.
- a PostUploadPack whose replica answers "not our ref" (a want it lacks) before
  anything was relayed is tried again on another up-to-date replica, the primary
  first, writing or not: a fetch is two requests routed independently, and the
  advertisement may have come from the primary with a write in flight (every other
  candidate outdated) while the POST lands on a replica a job raised meanwhile without
  that write. The primary holds whatever any replica advertised (writes in flight
  execute there), unless it moved since.
- maintenance: every healthy assigned replica, no generation change; the first answer
  is the client's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from google.protobuf import message

from cluster.metadata.api import Repository
from cluster.proxy.calls import Calls
from cluster.proxy.forwarding import NodeError, RequestLog, rewrite, time_remaining
from cluster.proxy.router import MethodInfo, route_accessor, route_maintenance
from common.errors import GitraftError, NotFoundError
from common.logs import bind_fields

log = logging.getLogger(__name__)

# Attempts of a read that fails with UNAVAILABLE before anything was relayed.
READ_ATTEMPTS = 3
# Largest request stream (bytes, after its first message) of a speculative read.
SPECULATIVE_BODY = 64 * 1024
# Client-streaming reads whose client sends its whole request before it waits for an
# answer (stateless-rpc), so the proxy may read it all first. A full-duplex one
# (UploadPackSession: the client waits for upload-pack's advertisement) is never
# speculative: its request stream ends only after answers.
HALF_DUPLEX = frozenset({"/gitraft.v1.SmartHTTPService/PostUploadPack"})
# How a node words NOT_FOUND for a repository missing at the path it was asked about
# (node.storage.Storage.existing_path_of).
MISSING_REPLICA = "repository not found: "
# upload-pack's first answer when a want names an object its repository lacks (git's
# `packet_writer_error` in upload-pack.c, protocol v0 and v2 alike); an answer that
# starts so and is no larger than LACKS_WANTED_HEAD is retried (see read_stream).
LACKS_WANTED = b"ERR upload-pack: not our ref "
LACKS_WANTED_HEAD = 512


class ReadPath(Calls):
    """Accessor and maintenance calls (see module doc)."""

    async def read_unary(self, info: MethodInfo, request: message.Message, path: str, context: Any) -> bytes:
        """An accessor; the empty response for RepositoryExists of a missing repository."""
        repo = await self.lookup(path, info)
        if repo is None:
            return info.response_class().SerializeToString()  # RepositoryExists: false
        healthy = await self.store.healthy_storages(self.clock())
        tried: list[str] = []
        writing = await self._writing(repo)
        while True:
            storage = self._read_from(repo, healthy, tried, writing)
            bound = self._read_bound(context) if _another_replica(repo, healthy, tried, storage) else None
            try:
                return await self.call_unary(
                    info, storage, rewrite(info, request, repo, storage), context, bound
                )
            except NodeError as exc:
                if not _retry_read(self._silent(exc, storage, bound), tried, storage):
                    raise

    async def read_stream(
        self,
        info: MethodInfo,
        request: message.Message,
        path: str,
        rest: AsyncIterator[bytes] | None,
        context: Any,
    ) -> AsyncIterator[bytes]:
        """A response-streaming accessor, relayed message by message."""
        body: list[bytes] | None = []
        if rest is not None:
            if info.path in HALF_DUPLEX:
                body, rest = await _small_stream(rest, SPECULATIVE_BODY)
            else:
                body = None
        request_log = RequestLog(rest) if rest is not None else None
        tried: list[str] = []
        if body is not None:
            barrier = asyncio.ensure_future(self.barrier.wait())
            try:
                speculative = await self._speculate(info, request, path, request_log, barrier, context, tried)
            finally:
                if not barrier.done():
                    barrier.cancel()
            if speculative is not None:
                async for chunk in speculative:
                    yield chunk
                return
            repo = await self.store.get_repository(path)  # the barrier is done
            if repo is None:
                raise NotFoundError(f"repository not found: {path!r}")
        else:
            repo = await self.lookup(path, info)
            if repo is None:
                raise NotFoundError(f"repository not found: {path!r}")
        healthy = await self.store.healthy_storages(self.clock())
        writing = await self._writing(repo)
        lacking = bool(tried)  # the speculative call lacked a wanted object
        while True:
            storage = self._read_from(repo, healthy, tried, writing, lacking)
            first = rewrite(info, request, repo, storage)
            relayed = False
            attempt = request_log.attempt() if request_log is not None else None
            responses = self.call_stream(info, storage, first, attempt, context)
            try:
                bounded = _another_replica(repo, healthy, tried, storage)
                head = await self._first_response(responses, storage, bounded)
                if head is None:
                    return
                replayable = request_log is None or request_log.replayable
                if (
                    _lacks_wanted(info, head)
                    and replayable
                    and _another_replica(repo, healthy, tried, storage)
                ):
                    log.info("read retried: the replica lacks a wanted object", extra={"storage": storage})
                    tried.append(storage)
                    lacking = True
                    continue
                relayed = True
                yield head
                async for chunk in responses:
                    yield chunk
                return
            except NodeError as exc:
                replayable = request_log is None or request_log.replayable
                if relayed or not replayable or not _retry_read(exc, tried, storage):
                    raise
            finally:
                close = getattr(responses, "aclose", None)
                if close is not None:
                    await close()

    async def _speculate(
        self,
        info: MethodInfo,
        request: message.Message,
        path: str,
        request_log: RequestLog | None,
        barrier: asyncio.Future[None],
        context: Any,
        tried: list[str],
    ) -> AsyncIterator[bytes] | None:
        """The read's relay when its call on the local route, started before `barrier`
        completed, may serve it (speculation_holds); else None once `barrier` is done,
        with the call dropped and `request_log` still replayable. A replica whose first
        answer says it lacks a wanted object is appended to `tried`."""
        bind_fields(repository=path)
        local, healthy = await asyncio.gather(
            self.store.get_repository(path), self.store.healthy_storages(self.clock())
        )
        storage = None
        if local is not None:
            try:
                storage = route_accessor(local, healthy, writing=await self._writing(local)).storage
            except GitraftError:
                storage = None  # refusals are decided on fresh state only
        if local is None or storage is None:
            await barrier
            return None
        attempt = request_log.attempt() if request_log is not None else None
        responses = self.call_stream(info, storage, rewrite(info, request, local, storage), attempt, context)
        head = asyncio.ensure_future(anext(responses, None))
        served = False
        try:
            await barrier
            # One hand-off to the database thread for the three reads (the intents are
            # those of `local`'s id: speculation_holds requires `fresh` to have it).
            fresh, healthy, intents = await asyncio.gather(
                self.store.get_repository(path),
                self.store.healthy_storages(self.clock()),
                self.store.open_intents(local.repository_id),
            )
            writing = frozenset(s for i in intents for s in i.storages)
            if fresh is not None and speculation_holds(local, fresh, storage, healthy, writing):
                bounded = _another_replica(fresh, healthy, [], storage)
                timeout = self.read_first_response_timeout if bounded else None
                first = await asyncio.wait_for(asyncio.shield(head), timeout)
                if first is not None and _lacks_wanted(info, first):
                    log.info("read retried: the replica lacks a wanted object", extra={"storage": storage})
                    tried.append(storage)
                else:
                    served = True
        except (NodeError, TimeoutError) as exc:  # the read runs again, unspeculated
            log.info("speculative read failed", extra={"storage": storage, "error": str(exc)})
        finally:
            if not served:
                head.cancel()
                await asyncio.gather(head, return_exceptions=True)
                await responses.aclose()  # type: ignore[attr-defined]
        if not served:
            return None
        self.metrics.reads.labels(storage=storage).inc()
        bind_fields(storage=storage)
        return _relay(first, responses)

    async def maintain(self, info: MethodInfo, request: message.Message, path: str, context: Any) -> bytes:
        """A unary maintenance call on every healthy assigned replica; the first answer."""
        repo = await self.lookup(path, info)
        if repo is None:
            return info.response_class().SerializeToString()
        healthy = await self.store.healthy_storages(self.clock())
        storages = route_maintenance(repo, healthy).storages
        answers = await asyncio.gather(
            *(self.call_unary(info, s, rewrite(info, request, repo, s), context) for s in storages)
        )
        return answers[0]

    async def _writing(self, repo: Repository) -> frozenset[str]:
        """Storages under an open write intent for `repo` (read after the lookup's barrier,
        so every intent begun before this read is seen)."""
        return frozenset(s for i in await self.store.open_intents(repo.repository_id) for s in i.storages)

    def _read_bound(self, context: Any) -> float | None:
        """The proxy's own bound on a unary read's node call: `read_first_response_timeout`
        when the client allows longer (or set no deadline), else None (the client's
        deadline binds)."""
        remaining = time_remaining(context)
        if remaining is not None and remaining <= self.read_first_response_timeout:
            return None
        return self.read_first_response_timeout

    def _silent(self, exc: NodeError, storage: str, bound: float | None) -> NodeError:
        """A node call cut off by the proxy's own read bound is UNAVAILABLE (retried on
        another replica), not the client's DEADLINE_EXCEEDED."""
        if bound is None or exc.code != grpc.StatusCode.DEADLINE_EXCEEDED:
            return exc
        message = f"storage {storage!r} did not answer within {bound:g} s"
        return NodeError(grpc.StatusCode.UNAVAILABLE, message)

    async def _first_response(
        self, responses: AsyncIterator[bytes], storage: str, bounded: bool
    ) -> bytes | None:
        """The first response message of a read (None: the node sent none). When
        `bounded` (another replica could serve it), within `read_first_response_timeout`:
        a node silent that long (paused, wedged) is UNAVAILABLE, so the read is tried on
        another replica when nothing was consumed. The last candidate is waited for as
        long as the client allows (an overloaded cluster is slow rather than failing)."""
        try:
            timeout = self.read_first_response_timeout if bounded else None
            return await asyncio.wait_for(anext(responses), timeout)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise NodeError(
                grpc.StatusCode.UNAVAILABLE,
                f"storage {storage!r} did not answer within {self.read_first_response_timeout:g} s",
            ) from None

    def _read_from(
        self,
        repo: Repository,
        healthy: set[str],
        tried: list[str],
        writing: frozenset[str] = frozenset(),
        lacking: bool = False,
    ) -> str:
        """A replica to read from, preferring ones not yet `tried` (then any again), and
        ones not in `writing` (see route_accessor). When `lacking` (a replica tried
        lacked a wanted object), the primary if it is an untried candidate."""
        untried = healthy - set(tried)
        candidates = [s for s in repo.up_to_date() if s in untried]
        if lacking and repo.primary in candidates:
            storage = repo.primary
        else:
            storage = route_accessor(repo, untried if candidates else healthy, writing=writing).storage
        self.metrics.reads.labels(storage=storage).inc()
        bind_fields(storage=storage)
        return storage


def speculation_holds(
    local: Repository, fresh: Repository, storage: str, healthy: set[str], writing: frozenset[str]
) -> bool:
    """Whether a read of `storage` begun on the `local` state (applied before its call
    started) serves a client whose barrier then gave `fresh`.

    It does when `storage` was up to date at generation G in `local`, G is still the
    repository's generation in `fresh` (the same repository), and route_accessor could
    pick `storage` on `fresh`. Why: a write acknowledged before the read began committed
    its generation bump before the barrier, so it is at most G; and `storage` held every
    write up to G before its call started (its generation is set only after it has
    them), so the call sees them all. Anything newer it may see (an unacknowledged write
    in flight) a read routed after the barrier could see as well."""
    if fresh.repository_id != local.repository_id or fresh.generation != local.generation:
        return False
    if storage not in local.up_to_date():
        return False

    def prefer(options: Sequence[str]) -> str:
        return storage if storage in options else options[0]

    try:
        return route_accessor(fresh, healthy, choose=prefer, writing=writing).storage == storage
    except GitraftError:
        return False


async def _small_stream(
    rest: AsyncIterator[bytes], limit: int
) -> tuple[list[bytes] | None, AsyncIterator[bytes]]:
    """(every message of `rest`, an iterator of them) when they end within `limit`
    bytes; else (None, an iterator of the same messages as `rest`)."""
    seen: list[bytes] = []
    size = 0
    async for item in rest:
        seen.append(item)
        size += len(item)
        if size > limit:
            return None, _chain(seen, rest)
    return seen, _chain(seen, None)


async def _chain(items: list[bytes], rest: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
    for item in items:
        yield item
    if rest is not None:
        async for item in rest:
            yield item


async def _relay(first: bytes | None, responses: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first is None:
            return
        yield first
        async for chunk in responses:
            yield chunk
    finally:
        await responses.aclose()  # type: ignore[attr-defined]


def _lacks_wanted(info: MethodInfo, head: bytes) -> bool:
    """Whether `head`, a PostUploadPack's first response message, is upload-pack's
    refusal of a want its repository lacks."""
    if info.path not in HALF_DUPLEX or len(head) > LACKS_WANTED_HEAD:
        return False
    data = bytes(info.response_class().FromString(head).data)  # type: ignore[attr-defined]
    return data[4:].startswith(LACKS_WANTED)


def _another_replica(repo: Repository, healthy: set[str], tried: list[str], storage: str) -> bool:
    """Whether a read about to run on `storage` could be retried on another healthy,
    up-to-date replica not tried yet (within READ_ATTEMPTS)."""
    if len(tried) + 1 >= READ_ATTEMPTS:
        return False
    return any(s in healthy and s != storage and s not in tried for s in repo.up_to_date())


def _retry_read(exc: NodeError, tried: list[str], storage: str) -> bool:
    """Whether a read that failed on `storage` with `exc` is tried again (on another
    replica when there is one), at most READ_ATTEMPTS times: for UNAVAILABLE (nothing
    was served; e.g. a channel still reconnecting to a restarted node, or a silent one),
    and for a node that has no repository at the replica's path although the metadata
    says the replica is current (deleted on disk, not yet noticed by the reconciler)."""
    tried.append(storage)
    missing = exc.code == grpc.StatusCode.NOT_FOUND and str(exc).startswith(MISSING_REPLICA)
    if not (exc.code == grpc.StatusCode.UNAVAILABLE or missing) or len(tried) >= READ_ATTEMPTS:
        return False
    log.info("read retried", extra={"storage": storage, "error": str(exc)})
    return True
