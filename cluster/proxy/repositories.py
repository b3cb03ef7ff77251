"""Repository creation and removal through the proxy.

Creation (CreateRepository, or a push to a missing path through the gateway when
`create_on_push` is set): barrier; refuse a path that exists (ALREADY_EXISTS); place
`replication_factor` replicas (cluster.proxy.placement); commit the metadata in Raft (every
replica at generation -1, paths derived from a fresh id); then create it on the
primary like any mutator (`WritePath.write_unary`: intent, node, finish_write), which puts the primary at
generation 0 and schedules `update` jobs that create the other replicas. When the
primary refuses, or the write is fenced (the primary moved meanwhile), the metadata is
removed again. Two proxies creating the same path
race in Raft: one `create_repository` wins, the other gets ALREADY_EXISTS.

Removal: the metadata goes first (so nothing routes to the repository any more, its
waiting replication jobs are dropped and running ones can no longer complete), then
every assigned replica is removed from disk; a replica that cannot be removed now is
logged and left to the `delete_replica` job the removal queued for it (retried by the
replicators; until then an untracked leftover under an id-derived path, harmless to
later repositories).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import message

from cluster.metadata.api import Repository
from cluster.proxy.forwarding import NodeError, replica_of
from cluster.proxy.placement import new_repository_id, place, replica_path
from cluster.proxy.router import MethodInfo
from common.errors import AlreadyExistsError, FailedPreconditionError, GitraftError
from common.paths import validate_relative_path
from gitraft.v1 import repository_pb2, shared_pb2

if TYPE_CHECKING:
    from cluster.proxy.writes import WritePath

log = logging.getLogger(__name__)

CREATE = "/gitraft.v1.RepositoryService/CreateRepository"
REMOVE = "/gitraft.v1.RepositoryService/RemoveRepository"

# Seconds a push waits for a repository another client is creating at the same time.
CREATE_WAIT = 30.0


class Repositories:
    """Creates and removes repositories for one proxy: its Coordinator's CREATE and
    REMOVE plans, and the gateway's push-to-create hook (`on_missing_repository`)."""

    def __init__(self, coordinator: WritePath, replication_factor: int, create_on_push: bool) -> None:
        self._c = coordinator
        self.replication_factor = replication_factor
        self.create_on_push = create_on_push

    async def create(
        self, relative_path: str, request: message.Message, info: MethodInfo, context: Any
    ) -> bytes:
        """Create `relative_path` (see module doc); returns the primary's response bytes."""
        c = self._c
        repo = await self._create_metadata(relative_path)
        primary = repo.primary
        intent = await c.begin_write(repo, primary, context)

        undone = False

        async def undo(_exc: BaseException) -> None:
            nonlocal undone
            undone = True
            await self._undo(repo, intent.intent_id, primary)

        try:
            response = await c.write_unary(info, request, repo, primary, intent, context, undo)
        except FailedPreconditionError:
            if not undone:
                # Fenced at finish_write (the primary moved while this one created it): no
                # replica holds an acknowledged write, and the new primary may hold nothing
                # on disk. Forget the repository (its replicas are deleted by jobs) so the
                # client's retry creates it afresh instead of finding a repository whose
                # newest replica is empty.
                await asyncio.shield(self._forget(repo))
            raise
        log.info(
            "repository created",
            extra={"repository": relative_path, "repository_id": repo.repository_id, "primary": primary},
        )
        return response

    async def on_missing_repository(self, relative_path: str) -> bool:
        """The gateway's push-to-create hook: True when the repository now exists."""
        if not self.create_on_push:
            return False
        info = self._c.registry.get(CREATE)
        assert info is not None
        try:
            path = validate_relative_path(relative_path)
            request = repository_pb2.CreateRepositoryRequest(
                repository=shared_pb2.Repository(relative_path=path)
            )
            await self.create(path, request, info, None)
        except AlreadyExistsError:
            # Created concurrently (another push, another proxy): retry once it has data.
            return await self._wait_written(relative_path)
        except GitraftError as exc:
            log.warning("push-to-create failed", extra={"repository": relative_path, "error": str(exc)})
            return False
        return True

    async def remove(self, relative_path: str, info: MethodInfo, context: Any) -> bytes:
        """Remove the metadata, then every replica on disk (best effort)."""
        c = self._c
        repo = await c.lookup(relative_path, info)
        assert repo is not None
        await c.store.remove_repository(repo.repository_id, c.clock())
        storages = [r.storage for r in repo.replicas]
        results = await asyncio.gather(
            *(self._remove_replica(info, repo, s, context) for s in storages), return_exceptions=True
        )
        for storage, result in zip(storages, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "replica not removed from disk",
                    extra={"repository": relative_path, "storage": storage, "error": str(result)},
                )
        return info.response_class().SerializeToString()

    async def _wait_written(self, relative_path: str) -> bool:
        """Whether `relative_path` reaches generation 0 (its primary created it) within
        CREATE_WAIT seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CREATE_WAIT
        while loop.time() < deadline:
            await self._c.barrier.wait()
            repo = await self._c.store.get_repository(relative_path)
            if repo is None:
                return False
            if repo.generation >= 0:
                return True
            await asyncio.sleep(0.05)
        return False

    async def _create_metadata(self, relative_path: str) -> Repository:
        c = self._c
        await c.barrier.wait()
        if await c.store.get_repository(relative_path) is not None:
            raise AlreadyExistsError(f"repository already exists: {relative_path!r}")
        now = c.clock()
        healthy = await c.store.healthy_storages(now)
        storages = [s.name for s in await c.store.storages()]
        replicas, primaries = await c.store.storage_counts()
        placement = place(storages, healthy, replicas, primaries, self.replication_factor)
        repository_id = new_repository_id()
        return await c.store.create_repository(
            repository_id,
            relative_path,
            replica_path(repository_id),
            list(placement.storages),
            placement.primary,
            self.replication_factor,
            now,
        )

    async def _undo(self, repo: Repository, intent: str, primary: str) -> None:
        c = self._c
        try:
            await c.store.finish_write(intent, [], [primary], c.clock())
            await c.store.remove_repository(repo.repository_id, c.clock())
        except Exception as exc:
            log.warning(
                "could not undo a failed creation",
                extra={"repository": repo.relative_path, "error": str(exc)},
            )

    async def _forget(self, repo: Repository) -> None:
        try:
            await self._c.store.remove_repository(repo.repository_id, self._c.clock())
        except Exception as exc:
            log.warning(
                "could not forget a fenced creation",
                extra={"repository": repo.relative_path, "error": str(exc)},
            )

    async def _remove_replica(self, info: MethodInfo, repo: Repository, storage: str, context: Any) -> None:
        request = repository_pb2.RemoveRepositoryRequest(repository=replica_of(repo, storage))
        try:
            await self._c.call_unary(info, storage, request.SerializeToString(), context)
        except NodeError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
