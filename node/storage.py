"""Mapping requests onto the storage directory.

`Storage.path_of` is the only way a handler turns a client-supplied Repository into a
filesystem path: it validates the relative path (common.paths) before anything touches
the disk, and checks the storage name when the request sets one.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pygit2

from common.errors import InvalidArgumentError, NotFoundError, quoted
from common.paths import resolve_under
from gitraft.v1 import shared_pb2

# Marks the hidden temporary directories of a create, remove or replication in progress:
# storage listings skip them and a starting node deletes them (crash leftovers).
TEMP_MARKER = ".gitraft-tmp-"


def temp_sibling(path: Path, purpose: str) -> Path:
    """A fresh hidden name beside `path`, recognisable by TEMP_MARKER."""
    return path.parent / f".{path.name}{TEMP_MARKER}{purpose}-{secrets.token_hex(6)}"


class Storage:
    """One storage root of bare repositories."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, repository: shared_pb2.Repository) -> Path:
        """The on-disk path for `repository`; InvalidArgumentError for a bad path or storage."""
        if not repository.relative_path:
            raise InvalidArgumentError("repository is required")
        if repository.storage_name and repository.storage_name != self.name:
            raise InvalidArgumentError(
                f"storage {quoted(repository.storage_name)} is not served here (this is {self.name!r})"
            )
        return resolve_under(self.root, repository.relative_path)

    def existing_path_of(self, repository: shared_pb2.Repository) -> Path:
        """Like path_of, but NotFoundError unless a bare repository is there."""
        path = self.path_of(repository)
        if not is_bare_repository(path):
            raise NotFoundError(f"repository not found: {quoted(repository.relative_path)}")
        return path

    def open(self, repository: shared_pb2.Repository) -> pygit2.Repository:
        """Open an existing repository with pygit2 (NotFoundError when missing)."""
        return pygit2.Repository(str(self.existing_path_of(repository)))


def is_bare_repository(path: Path) -> bool:
    """Whether `path` looks like a bare git repository (HEAD, objects/, refs/)."""
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()
