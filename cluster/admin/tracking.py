"""Repositories on the nodes' disks that the metadata does not know: list and adopt them.

`list_untracked` asks every registered node for the bare repositories under its storage
(ServerService.ListStorageRepositories) and keeps those that are no replica assigned to
that node. `track` adopts one: the node must confirm the repository exists
(RepositoryExists), then one Raft command (`track_repository`) records it with that
node as primary at generation 0 and schedules the other replicas' creation from it.
The on-disk path stays where it is (on every replica) and is also the client-facing
path, with `.git` appended when it lacks it (the git gateway names repositories
`<path>.git`). A repository at the same path on the other nodes' disks is overwritten
by the replication that creates their replicas.
"""

from __future__ import annotations

import asyncio

from cluster.admin.operations import known_storage
from cluster.admin.views import cluster_repository, lookup
from cluster.metadata.api import MetadataStore
from cluster.proxy.nodes import NodePool
from cluster.proxy.placement import REPLICA_PREFIX, counts, new_repository_id, place
from common.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from common.paths import validate_relative_path
from gitraft.v1 import (
    cluster_pb2,
    repository_pb2,
    repository_pb2_grpc,
    server_pb2,
    server_pb2_grpc,
    shared_pb2,
)

# Seconds a node has to answer.
NODE_TIMEOUT = 10.0


async def storage_repositories(nodes: NodePool, storage: str) -> list[str]:
    """Relative paths of the bare repositories on `storage`'s disk (raises grpc errors)."""
    stub = server_pb2_grpc.ServerServiceStub(nodes.channel(storage))
    request = server_pb2.ListStorageRepositoriesRequest(storage_name=storage)
    paths: list[str] = []
    async for message in stub.ListStorageRepositories(
        request, metadata=nodes.metadata(), timeout=NODE_TIMEOUT
    ):
        paths.extend(message.relative_paths)
    return paths


async def list_untracked(
    store: MetadataStore, nodes: NodePool
) -> cluster_pb2.ListUntrackedRepositoriesResponse:
    """Every (storage, path) on disk that is not a replica assigned to that storage;
    storages that could not be listed are named in `errors`."""
    await store.barrier()
    tracked: dict[str, set[str]] = {}
    for repo in await store.list_repositories():
        for r in repo.replicas:
            tracked.setdefault(r.storage, set()).add(repo.replica_path)
    names = [s.name for s in await store.storages()]
    listed = await asyncio.gather(*(storage_repositories(nodes, s) for s in names), return_exceptions=True)
    response = cluster_pb2.ListUntrackedRepositoriesResponse()
    for storage, paths in zip(names, listed, strict=True):
        if isinstance(paths, BaseException):
            response.errors[storage] = _describe(paths)
            continue
        for path in paths:
            if path not in tracked.get(storage, set()):
                response.repositories.add(storage=storage, relative_path=path)
    return response


async def track(
    store: MetadataStore,
    nodes: NodePool,
    request: cluster_pb2.TrackRepositoryRequest,
    default_replication_factor: int,
    now: float,
) -> cluster_pb2.TrackRepositoryResponse:
    """Adopt the repository at `relative_path` on `authoritative_storage` (see module doc)."""
    path = validate_relative_path(request.relative_path)
    if path.split("/")[0] == REPLICA_PREFIX:
        raise InvalidArgumentError(f"paths under {REPLICA_PREFIX + '/'!r} belong to the cluster: {path!r}")
    client_path = path if path.endswith(".git") else f"{path}.git"
    storage = request.authoritative_storage
    await store.barrier()
    await known_storage(store, storage)
    if await lookup(store, client_path) is not None:
        raise AlreadyExistsError(f"repository already tracked: {client_path!r}")
    healthy = await store.healthy_storages(now)
    if storage not in healthy:
        raise FailedPreconditionError(f"storage {storage!r} is unhealthy; it cannot confirm {path!r}")
    if not await _exists_on(nodes, storage, path):
        raise NotFoundError(f"no repository at {path!r} on storage {storage!r}")
    names = [s.name for s in await store.storages()]
    wanted = int(request.replication_factor) or default_replication_factor
    replicas, primaries = counts(await store.list_repositories())
    rest = [n for n in names if n != storage]
    others: tuple[str, ...] = ()
    if wanted > 1 and any(n in healthy for n in rest):
        others = place(rest, healthy, replicas, primaries, wanted - 1).storages
    elif wanted > 1:  # none healthy now: assigned anyway, created once they return
        others = tuple(sorted(rest)[: wanted - 1])
    storages = [storage, *others]
    repo = await store.track_repository(
        new_repository_id(), client_path, path, storages, storage, len(storages), now
    )
    return cluster_pb2.TrackRepositoryResponse(repository=cluster_repository(repo, healthy))


async def _exists_on(nodes: NodePool, storage: str, path: str) -> bool:
    stub = repository_pb2_grpc.RepositoryServiceStub(nodes.channel(storage))
    request = repository_pb2.RepositoryExistsRequest(
        repository=shared_pb2.Repository(storage_name=storage, relative_path=path)
    )
    try:
        answer = await stub.RepositoryExists(request, metadata=nodes.metadata(), timeout=NODE_TIMEOUT)
    except Exception as exc:
        raise FailedPreconditionError(
            f"storage {storage!r} could not confirm {path!r}: {_describe(exc)}"
        ) from exc
    return bool(answer.exists)


def _describe(exc: BaseException) -> str:
    """A node error for an operator: the gRPC status and details, never a class name."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{code().name.lower()}: {details() or 'no details'}"
    return str(exc) or "failed"
