"""Where a new repository lives: its id, its on-disk path, and its replicas.

Pure functions; the caller supplies the storages, their health and their load.

- `replica_path(id)`: `@cluster/ab/cd/<id>.git`, derived from the id only, so a rename
  changes metadata and never touches the disk, and two repositories never race for a
  path on a node.
- `place(...)`: `replication_factor` storages (all of them when fewer exist), healthy
  ones first, each group by fewest repositories then name; the primary is the healthy
  chosen storage that is primary of the fewest repositories.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cluster.metadata.api import Repository
from common.errors import UnavailableError

REPLICA_PREFIX = "@cluster"


def new_repository_id() -> str:
    """A fresh repository id (32 hex digits)."""
    return uuid.uuid4().hex


def replica_path(repository_id: str) -> str:
    """The on-disk relative path of every replica of `repository_id`."""
    return f"{REPLICA_PREFIX}/{repository_id[0:2]}/{repository_id[2:4]}/{repository_id}.git"


@dataclass(frozen=True)
class Placement:
    primary: str
    storages: tuple[str, ...]  # the primary first


def place(
    storages: Iterable[str],
    healthy: set[str],
    replica_counts: Mapping[str, int],
    primary_counts: Mapping[str, int],
    replication_factor: int,
) -> Placement:
    """Choose the storages of a new repository (see the module doc).

    Raises UnavailableError when no storage is healthy (a later retry may succeed)."""
    names = sorted(set(storages))
    up = [s for s in names if s in healthy]
    if not up:
        raise UnavailableError(f"no healthy storage to place a repository on (known: {names!r})")
    down = [s for s in names if s not in healthy]

    def load(s: str) -> tuple[int, str]:
        return (replica_counts.get(s, 0), s)

    chosen = (sorted(up, key=load) + sorted(down, key=load))[:replication_factor]
    primary = min((s for s in chosen if s in healthy), key=lambda s: (primary_counts.get(s, 0), load(s)))
    return Placement(primary, (primary, *[s for s in chosen if s != primary]))


def counts(repositories: Iterable[Repository]) -> tuple[dict[str, int], dict[str, int]]:
    """(replicas per storage, primaries per storage) over assigned replicas."""
    replicas: dict[str, int] = {}
    primaries: dict[str, int] = {}
    for repo in repositories:
        primaries[repo.primary] = primaries.get(repo.primary, 0) + 1
        for r in repo.replicas:
            replicas[r.storage] = replicas.get(r.storage, 0) + 1
    return replicas, primaries
