"""The operator's changes to one repository: failover, accept data loss, replication
factor, removal. Each reads the repository after a barrier, decides, and commits one
or two Raft commands of the metadata store; the store re-checks its own preconditions
when the command applies (e.g. `set_primary` refuses a storage that became outdated
meanwhile), so a decision on state that moved is refused, never applied blindly.

Refusals (common.errors): NotFoundError for an unknown repository or storage,
FailedPreconditionError when the cluster's state forbids it (the message says what
would make it possible), InvalidArgumentError for a bad request.
"""

from __future__ import annotations

from cluster.admin.views import cluster_repository, require
from cluster.metadata.api import MetadataStore, Repository
from cluster.proxy.placement import counts
from common.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from gitraft.v1 import cluster_pb2


async def _storage_names(store: MetadataStore) -> list[str]:
    return [s.name for s in await store.storages()]


async def set_primary(
    store: MetadataStore, request: cluster_pb2.SetPrimaryRequest, now: float
) -> cluster_pb2.SetPrimaryResponse:
    """Move the primary to `request.storage`, which must be assigned and healthy, and up
    to date unless `force`: then it first becomes the authoritative replica
    (accept_dataloss) and the replicas that were ahead of it are overwritten from it."""
    await store.barrier()
    repo = await require(store, request.relative_path)
    target = request.storage
    gens = {r.storage: r.generation for r in repo.replicas}
    if target not in gens:
        raise FailedPreconditionError(
            f"storage {target!r} holds no replica of {repo.relative_path!r} (replicas: {sorted(gens)!r})"
        )
    healthy = await store.healthy_storages(now)
    if target not in healthy:
        raise FailedPreconditionError(f"storage {target!r} is unhealthy; it cannot be the primary")
    ahead = sorted(s for s, g in gens.items() if g > gens[target])
    if ahead and not request.force:
        raise FailedPreconditionError(
            f"storage {target!r} is outdated for {repo.relative_path!r} (generation {gens[target]},"
            f" {', '.join(repr(s) for s in ahead)} at {repo.generation});"
            " --force would lose their newer writes"
        )
    if ahead:
        await store.accept_dataloss(repo.repository_id, target, now)
    moved = await store.set_primary(repo.repository_id, target, now)
    return cluster_pb2.SetPrimaryResponse(
        repository=cluster_repository(moved, healthy), previous_primary=repo.primary, overwritten=ahead
    )


async def accept_dataloss(
    store: MetadataStore, request: cluster_pb2.AcceptDatalossRequest, now: float
) -> cluster_pb2.AcceptDatalossResponse:
    """Make the authoritative storage the newest replica; every other one is updated
    from it (writes only they hold are lost). The elector then makes it the primary when
    it is healthy."""
    await store.barrier()
    repo = await require(store, request.relative_path)
    storage = request.authoritative_storage
    assigned = sorted(r.storage for r in repo.replicas)
    if storage not in assigned:
        raise FailedPreconditionError(
            f"storage {storage!r} holds no replica of {repo.relative_path!r} (replicas: {assigned!r})"
        )
    accepted = await store.accept_dataloss(repo.repository_id, storage, now)
    healthy = await store.healthy_storages(now)
    return cluster_pb2.AcceptDatalossResponse(
        repository=cluster_repository(accepted, healthy), overwritten=[s for s in assigned if s != storage]
    )


def choose_assignment(
    repo: Repository, wanted: int, storages: list[str], healthy: set[str], load: dict[str, int]
) -> tuple[list[str], list[str]]:
    """(assign, unassign) bringing `repo` to `wanted` replicas.

    More: healthy unassigned storages holding the fewest repositories (then by name);
    FailedPreconditionError when there are not enough. Fewer: non-primary replicas,
    outdated or unhealthy ones first, then the most loaded (then by name)."""
    assigned = [r.storage for r in repo.replicas]
    if wanted > len(assigned):
        free = sorted(
            (s for s in storages if s not in assigned and s in healthy), key=lambda s: (load.get(s, 0), s)
        )
        missing = wanted - len(assigned)
        if len(free) < missing:
            raise FailedPreconditionError(
                f"{repo.relative_path!r} needs {missing} more storage(s) but only {len(free)} healthy"
                f" unassigned one(s) exist: {free!r}"
            )
        return free[:missing], []
    current = set(repo.up_to_date())

    def keep_score(s: str) -> tuple[bool, bool, int, str]:
        return (s in current and s in healthy, s in healthy, -load.get(s, 0), s)

    removable = sorted((s for s in assigned if s != repo.primary), key=keep_score)
    return [], removable[: len(assigned) - wanted]


async def set_replication_factor(
    store: MetadataStore, request: cluster_pb2.SetReplicationFactorRequest, now: float
) -> cluster_pb2.SetReplicationFactorResponse:
    """Assign or unassign replicas until the repository has the wanted count (see
    `choose_assignment`); returns the resulting assignment."""
    wanted = int(request.replication_factor)
    if wanted < 1:
        raise InvalidArgumentError(f"replication factor must be at least 1, got {wanted!r}")
    await store.barrier()
    repo = await require(store, request.relative_path)
    repos = await store.list_repositories()
    storages = await _storage_names(store)
    if wanted > len(storages):
        raise FailedPreconditionError(
            f"replication factor {wanted} exceeds the {len(storages)} storages known"
        )
    healthy = await store.healthy_storages(now)
    load, _ = counts(repos)
    assign, unassign = choose_assignment(repo, wanted, storages, healthy, load)
    if assign or unassign or wanted != repo.replication_factor:
        repo = await store.set_replication_factor(repo.repository_id, assign, unassign, now, wanted)
    return cluster_pb2.SetReplicationFactorResponse(
        repository=cluster_repository(repo, healthy), assigned=assign, unassigned=unassign
    )


async def remove_repository(
    store: MetadataStore, request: cluster_pb2.RemoveClusterRepositoryRequest, now: float
) -> cluster_pb2.RemoveClusterRepositoryResponse:
    """Without `apply`, only the repository as it would be removed. With it: the
    metadata is forgotten (nothing routes to it any more) and every replica gets a
    `delete_replica` job, which the replicators run to delete it from disk."""
    await store.barrier()
    repo = await require(store, request.relative_path)
    healthy = await store.healthy_storages(now)
    if request.apply:
        await store.remove_repository(repo.repository_id, now)
    return cluster_pb2.RemoveClusterRepositoryResponse(
        repository=cluster_repository(repo, healthy), removed=request.apply
    )


async def known_storage(store: MetadataStore, name: str) -> None:
    """NotFoundError unless `name` is a registered storage."""
    names = await _storage_names(store)
    if name not in names:
        raise NotFoundError(f"unknown storage: {name!r} (known: {names!r})")
