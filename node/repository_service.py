"""RepositoryService on a storage node: create, inspect, checksum, optimize, remove.

Every handler maps its request through `Storage.path_of` / `existing_path_of` first, so
a bad path is INVALID_ARGUMENT before anything touches the disk. Disk walks and pygit2
work run in worker threads. ReplicateRepository and UploadPackSession come from
`ReplicationMixin` (node/replication.py).

Creation and removal are atomic on disk: a repository is initialised in a temporary
directory beside its target and renamed into place; removal renames it aside and then
deletes it. Temporary names contain TEMP_MARKER and are skipped by
ListStorageRepositories; a starting node removes those a crash left (node.janitor.sweep_at_start).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import grpc
import pygit2

from common.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError, UnavailableError
from gitraft.v1 import repository_pb2, repository_pb2_grpc
from node import janitor
from node.checksum import repository_checksum
from node.git import GitCommandError, run_git
from node.replication import ReplicationMixin
from node.storage import Storage, init_bare_repository, is_bare_repository, symbolic_head, temp_sibling

DEFAULT_BRANCH = "main"
# gc's own default expiry for unreachable objects (gc.pruneExpire).
PRUNE_EXPIRE = "2.weeks.ago"


def is_valid_branch_name(branch: str) -> bool:
    """What `git check-ref-format --branch` accepts: a valid ref under refs/heads/, not
    starting with '-' and not "HEAD"."""
    if branch.startswith("-") or branch == "HEAD":
        return False
    return bool(pygit2.reference_is_valid_name(f"refs/heads/{branch}"))


class RepositoryServicer(ReplicationMixin, repository_pb2_grpc.RepositoryServiceServicer):
    """Serves RepositoryService for one storage."""

    def __init__(
        self, storage: Storage, replication_timeout: float = 300.0, replication_copy_limit: int = 1024 * 1024
    ) -> None:
        self.storage = storage
        self.replication_timeout = replication_timeout
        self.replication_copy_limit = replication_copy_limit
        self.optimizing = janitor.Activity()  # its gc's temporaries are kept (node.janitor)

    async def CreateRepository(
        self, request: repository_pb2.CreateRepositoryRequest, context: grpc.aio.ServicerContext
    ) -> repository_pb2.CreateRepositoryResponse:
        """An empty bare repository whose HEAD names refs/heads/<default_branch or main>."""
        path = self.storage.path_of(request.repository)
        branch = request.default_branch or DEFAULT_BRANCH
        if not is_valid_branch_name(branch):
            raise InvalidArgumentError(f"invalid default branch: {branch!r}")
        if path.exists() or path.is_symlink():
            raise AlreadyExistsError(f"repository already exists: {request.repository.relative_path!r}")
        if not await create_bare_repository(path, branch):
            raise AlreadyExistsError(f"repository already exists: {request.repository.relative_path!r}")
        return repository_pb2.CreateRepositoryResponse()

    async def RepositoryExists(
        self, request: repository_pb2.RepositoryExistsRequest, context: grpc.aio.ServicerContext
    ) -> repository_pb2.RepositoryExistsResponse:
        path = self.storage.path_of(request.repository)
        return repository_pb2.RepositoryExistsResponse(exists=is_bare_repository(path))

    async def RemoveRepository(
        self, request: repository_pb2.RemoveRepositoryRequest, context: grpc.aio.ServicerContext
    ) -> repository_pb2.RemoveRepositoryResponse:
        """Renames the repository aside (it disappears at once), then deletes it."""
        path = self.storage.existing_path_of(request.repository)
        doomed = temp_sibling(path, "rm")
        try:
            os.rename(path, doomed)
        except FileNotFoundError as exc:  # removed concurrently
            raise NotFoundError(f"repository not found: {request.repository.relative_path!r}") from exc
        await asyncio.to_thread(shutil.rmtree, doomed, True)
        return repository_pb2.RemoveRepositoryResponse()

    async def RepositoryInfo(
        self, request: repository_pb2.RepositoryInfoRequest, context: grpc.aio.ServicerContext
    ) -> repository_pb2.RepositoryInfoResponse:
        path = self.storage.existing_path_of(request.repository)
        return await asyncio.to_thread(repository_info, path, request.refs_only)

    async def RepositoryChecksum(
        self, request: repository_pb2.RepositoryChecksumRequest, context: grpc.aio.ServicerContext
    ) -> repository_pb2.RepositoryChecksumResponse:
        """See node.checksum for the scheme (HEAD excluded)."""
        path = self.storage.existing_path_of(request.repository)
        checksum = await asyncio.to_thread(lambda: repository_checksum(pygit2.Repository(str(path))))
        return repository_pb2.RepositoryChecksumResponse(checksum=checksum)

    async def OptimizeRepository(
        self, request: repository_pb2.OptimizeRepositoryRequest, context: grpc.aio.ServicerContext
    ) -> repository_pb2.OptimizeRepositoryResponse:
        """`git gc`: packs objects and refs. Without `prune`, no object is deleted at all;
        with it, unreachable objects older than PRUNE_EXPIRE go. Refs never change.
        UNAVAILABLE while another gc runs on the repository."""
        path = self.storage.existing_path_of(request.repository)
        prune = f"--prune={PRUNE_EXPIRE}" if request.prune else "--no-prune"
        try:
            with self.optimizing.writing(path):
                await run_git(["-c", "gc.auto=0", "gc", "--quiet", prune], git_dir=path)
        except GitCommandError as exc:
            if "already running" in exc.stderr_text:
                raise UnavailableError(
                    f"optimization already running: {request.repository.relative_path!r}"
                ) from exc
            raise
        return repository_pb2.OptimizeRepositoryResponse()


async def create_bare_repository(path: Path, branch: str) -> bool:
    """A new bare repository (`init_bare_repository`, HEAD at refs/heads/`branch`) in a
    temporary sibling, then renamed to `path`.

    False (and nothing changed) when `path` appeared meanwhile; the temporary directory
    never survives a failure.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(path, "new")
    try:
        init_bare_repository(temp, f"refs/heads/{branch}")
        try:
            os.rename(temp, path)
        except OSError:  # ENOTEMPTY/EEXIST/ENOTDIR: someone else created it first
            return False
        return True
    finally:
        if temp.exists():
            await asyncio.to_thread(shutil.rmtree, temp, True)


def repository_info(path: Path, refs_only: bool = False) -> repository_pb2.RepositoryInfoResponse:
    """Sizes and counts of the repository at `path` (blocking: walks the directory),
    or with `refs_only` its ref count and HEAD's target alone (no walk)."""
    repo = pygit2.Repository(str(path))
    default_branch = symbolic_head(repo)
    refs = sum(1 for name in repo.listall_references() if name != "HEAD")
    if refs_only:
        return repository_pb2.RepositoryInfoResponse(ref_count=refs, default_branch=default_branch)
    objects = path / "objects"
    return repository_pb2.RepositoryInfoResponse(
        size_bytes=directory_size(path),
        ref_count=refs,
        default_branch=default_branch,
        loose_objects=count_loose_objects(objects),
        packfiles=sum(1 for _ in (objects / "pack").glob("*.pack")),
    )


def directory_size(path: Path) -> int:
    """Bytes of the regular files under `path` (symbolic links not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue  # removed meanwhile (e.g. by a concurrent repack)
    return total


def count_loose_objects(objects: Path) -> int:
    """Files in the two-hex-digit fan-out directories of `objects`."""
    count = 0
    for entry in objects.iterdir():
        if len(entry.name) == 2 and entry.is_dir() and _is_hex(entry.name):
            count += sum(1 for f in entry.iterdir() if len(f.name) == 38 and _is_hex(f.name))
    return count


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
