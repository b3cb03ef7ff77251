"""Metadata as ClusterService messages, and repositories found by their path."""

from __future__ import annotations

from cluster.metadata.api import MetadataStore, Repository
from common.errors import NotFoundError
from gitraft.v1 import cluster_pb2


def cluster_repository(repo: Repository, healthy: set[str]) -> cluster_pb2.ClusterRepository:
    latest = repo.generation
    return cluster_pb2.ClusterRepository(
        repository_id=repo.repository_id,
        relative_path=repo.relative_path,
        replica_path=repo.replica_path,
        primary=repo.primary,
        generation=latest,
        replication_factor=repo.replication_factor,
        replicas=[
            cluster_pb2.ReplicaStatus(
                storage=r.storage,
                generation=r.generation,
                assigned=True,  # every listed replica is assigned (metadata.api.Replica)
                healthy=r.storage in healthy,
                up_to_date=r.generation == latest,
            )
            for r in repo.replicas
        ],
    )


async def lookup(store: MetadataStore, relative_path: str) -> Repository | None:
    """The repository at `relative_path` in the local state (call a barrier first);
    `group/repo` also finds `group/repo.git`, the name the git gateway gives it."""
    repo = await store.get_repository(relative_path)
    if repo is None and relative_path and not relative_path.endswith(".git"):
        repo = await store.get_repository(f"{relative_path}.git")
    return repo


async def require(store: MetadataStore, relative_path: str) -> Repository:
    """`lookup`, or NotFoundError naming the path."""
    repo = await lookup(store, relative_path)
    if repo is None:
        raise NotFoundError(f"repository not found: {relative_path!r}")
    return repo
