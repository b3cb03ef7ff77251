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
from common.paths import TEMP_MARKER, resolve_under
from gitraft.v1 import shared_pb2
from node.dir_stash import STASH_NAME, DirectoryStash


def temp_sibling(path: Path, purpose: str) -> Path:
    """A fresh hidden name beside `path`, recognisable by TEMP_MARKER."""
    return path.parent / f".{path.name}{TEMP_MARKER}{purpose}-{secrets.token_hex(6)}"


class Storage:
    """One storage root of bare repositories."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # Replications' empty directories for reuse (node.dir_stash); its name holds
        # TEMP_MARKER: a starting node removes it, listings skip it.
        self.stash = DirectoryStash(self.root / STASH_NAME)

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


# What `git init --bare --template=` writes on a filesystem with executable bits (the
# object format SHA-1, the files backend): the whole repository a new replica or a new
# repository needs. tests/integration/test_node_replication.py compares it with git's.
BARE_CONFIG = b"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
BARE_DIRECTORIES = ("objects", "objects/info", "objects/pack", "refs", "refs/heads", "refs/tags")


def init_bare_repository(path: Path, head: str) -> None:
    """Blocking, no git process: create the empty bare repository `path` (which must not
    exist) with HEAD pointing at `head` (a full ref name, validated by the caller), as
    `git init --bare --template= --initial-branch` would - without the sample hooks and
    description of git's default template, which a served repository never uses.

    Spawning git costs ~8 ms of CPU on our machines (half of it writing the template's
    files), this ~2 ms (a mkdir or a small file costs ~0.3 ms of CPU there); a new
    replica is the commonest replication job of a backlog.
    """
    path.mkdir()
    for directory in BARE_DIRECTORIES:
        (path / directory).mkdir()
    (path / "config").write_bytes(BARE_CONFIG)
    (path / "HEAD").write_bytes(f"ref: {head}\n".encode())


def head_points_at(path: Path, head: str) -> bool:
    """Whether the repository's HEAD file is the symbolic ref `head` already (so a
    `git symbolic-ref` would change nothing); False when unreadable."""
    try:
        return (path / "HEAD").read_bytes() == f"ref: {head}\n".encode()
    except OSError:
        return False


def symbolic_head(repo: pygit2.Repository) -> str:
    """The full ref name HEAD points at ("refs/heads/main", unborn too), or "HEAD" when
    it is detached (what RepositoryInfo and ExportRepository answer)."""
    head = repo.lookup_reference("HEAD")
    return str(head.target) if head.type == pygit2.enums.ReferenceType.SYMBOLIC else "HEAD"
