"""Node-to-node replication: ReplicateRepository and UploadPackSession.

UploadPackSession (on the source) runs a full-duplex `git upload-pack <repo>` (as over
ssh): request `stdin` chunks go to git, stdout and stderr come back as they are written,
and the last message carries the exit status.

ReplicateRepository (on the target) makes the local repository an exact copy of the
source repository on another node:

1. The source repository must exist (a unary RepositoryInfo preflight, for clean
   errors) and tells HEAD's symbolic target (unborn too; none when detached).
   A missing target is created with that HEAD by `node.storage.init_bare_repository`
   (no git process); when the source has no ref, that is all (no fetch, steps 2 and 3):
   a new repository's replica costs no git process at all.
2. `git fetch --prune --force git://127.0.0.1:<port>/<one-time token> '+refs/*:refs/*'`
   runs in the target (the URL in git's environment, not its arguments: see
   TUNNEL_PLACEHOLDER); the node's loopback TunnelListener bridges that connection to
   an UploadPackSession on the source (node.replication_source). git's own negotiation
   sends only the missing objects; every ref is mirrored, deletions included (an empty
   source leaves no refs).
3. Refs are packed when the fetch left many loose ones (LOOSE_REFS_LIMIT), and HEAD is
   pointed at the source's target (`git symbolic-ref`, only when it points elsewhere).

Protocol: v0 over the tunnel. Mirroring needs every ref of the source, so protocol v2
(whose ls-refs only saves bytes for a narrower ref prefix) would advertise the same
refs; with 10,000 refs the advertisement is ~640 KB and costs little next to reading
the refs on each side (bench/replication_refs.py).

A missing target is created atomically: initialised in a hidden temporary sibling
(named like RepositoryService's), fetched into, then renamed into place. Replications of
one repository on one node run one at a time. The answer reports whether the repository
was created, the bytes received from the source (upload-pack's stdout: ref advertisement,
negotiation answers and the pack) and the resulting checksum (node.checksum, what
RepositoryChecksum answers). The node bounds the RPC with its own deadline
(`replication_timeout` in the node's config, DEADLINE_EXCEEDED past it) as well as the
caller's: a silent source cannot hold it. A cancelled or timed-out call kills the fetch
and closes the session on the source.

A source that answers nonsense (an invalid HEAD, bytes that are not pkt-lines) is
FAILED_PRECONDITION. Messages name repositories by their relative path, never by
their place on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pygit2
from prometheus_client import Counter as MetricCounter

from common.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    UnavailableError,
    hide_paths,
    quoted,
)
from gitraft.v1 import repository_pb2
from node import copy_check, fsck
from node.checksum import repository_checksum
from node.config import MAX_REPLICATION_COPY_LIMIT
from node.dir_stash import DirectoryStash
from node.git import GitCommandError, run_git
from node.pipes import GitPipe
from node.replica_copy import CopyRefused, copy_into, export_repository
from node.replication_source import SourceRepository
from node.smarthttp_service import protocol_env
from node.storage import Storage, head_points_at, init_bare_repository, is_bare_repository, temp_sibling

log = logging.getLogger(__name__)

REPLICATIONS = MetricCounter(
    "gitraft_node_replications",
    "ReplicateRepository calls that succeeded on this node as the target (how: copy, the "
    "source's object files copied (node.replica_copy); fetch, git fetch; none, a new "
    "replica of a repository without refs).",
    ["how"],
)

# The same object checks as a push (node.fsck), so a replica never holds what a push refuses.
# Only git:// (the node's own loopback TunnelListener), in protocol v0 (see above).
FETCH_CONFIG = (
    "protocol.allow=never",
    "protocol.git.allow=always",
    "protocol.version=0",
    "gc.auto=0",
    "maintenance.auto=false",
    *fsck.fetch_config(),
)
# Not --atomic: git then updates refs before pruning, so replacing refs/heads/a/b by
# refs/heads/a (a directory/file conflict) would fail forever. A failed fetch can leave
# some refs updated; the caller retries, and only a successful answer means "mirrored".
FETCH_FLAGS = ("--quiet", "--prune", "--force", "--no-tags", "--no-write-fetch-head")
MIRROR_REFSPEC = "+refs/*:refs/*"
# What the fetch's command line names instead of the tunnel's URL: any local user reads
# a process's arguments (/proc/<pid>/cmdline), and the first to connect with the
# one-time token is bridged to the source. `url.<tunnel URL>.insteadOf` in git's
# environment (readable by this user alone) rewrites it.
TUNNEL_PLACEHOLDER = "git://gitraft-tunnel/"
# git fetch writes every new ref as a loose file; with thousands of them, every later
# fetch (its connectivity check reads all refs) and every checksum pays one file read per
# ref. Past this many loose refs, a replication packs them (bench/replication_refs.py).
LOOSE_REFS_LIMIT = 256

_locks: weakref.WeakValueDictionary[Path, asyncio.Lock] = weakref.WeakValueDictionary()


class ReplicationMixin:
    """ReplicateRepository and UploadPackSession, mixed into RepositoryServicer."""

    storage: Storage
    # Seconds a ReplicateRepository may take (NodeConfig.replication_timeout).
    replication_timeout: float
    # Bytes of object files a replication copies instead of fetching (NodeConfig).
    replication_copy_limit: int

    async def ExportRepository(
        self, request: repository_pb2.ExportRepositoryRequest, context: grpc.aio.ServicerContext
    ) -> repository_pb2.ExportRepositoryResponse:
        """See node.replica_copy; the request's limit is capped at MAX_REPLICATION_COPY_LIMIT."""
        path = self.storage.existing_path_of(request.repository)
        limit = min(int(request.limit), MAX_REPLICATION_COPY_LIMIT)
        return await asyncio.to_thread(export_repository, path, limit)

    async def UploadPackSession(
        self,
        request_iterator: AsyncIterator[repository_pb2.UploadPackSessionRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[repository_pb2.UploadPackSessionResponse]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            raise InvalidArgumentError("empty request stream")
        path = self.storage.existing_path_of(first.repository)
        out: asyncio.Queue[repository_pb2.UploadPackSessionResponse | None] = asyncio.Queue(maxsize=8)

        async def on_stderr(chunk: bytes) -> None:
            await out.put(repository_pb2.UploadPackSessionResponse(stderr=chunk))

        pipe = GitPipe(
            ["upload-pack", str(path)],
            cwd=path,
            env=protocol_env(first.git_protocol),
            chunks=_stdin_of(first, requests),
            on_stderr=on_stderr,
        )
        async with pipe:
            forward = asyncio.create_task(_forward_stdout(pipe, out))
            try:
                while (message := await out.get()) is not None:
                    yield message
            finally:
                forward.cancel()

    async def ReplicateRepository(
        self, request: repository_pb2.ReplicateRepositoryRequest, context: grpc.aio.ServicerContext
    ) -> repository_pb2.ReplicateRepositoryResponse:
        target = self.storage.path_of(request.repository)
        node = request.source_node
        if not request.source.relative_path or not node.address:
            raise InvalidArgumentError("source repository and source node address are required")
        source = SourceRepository(node.address, node.token, request.source)
        relative = request.repository.relative_path
        try:
            async with asyncio.timeout(self.replication_timeout):
                created, copied, checksum = await _replicate(
                    target, relative, source, self.replication_copy_limit, self.storage.stash
                )
        except TimeoutError:
            raise DeadlineExceededError(
                f"replication of {quoted(relative)} from {quoted(node.address)} did not finish "
                f"within {self.replication_timeout:g} s"
            ) from None
        REPLICATIONS.labels("copy" if copied else "fetch" if checksum is not None else "none").inc()
        if checksum is None:  # a new replica of a repository without refs: nothing mirrored
            checksum = await asyncio.to_thread(lambda: repository_checksum(pygit2.Repository(str(target))))
        log.info(
            "replicated repository",
            extra={
                "relative_path": request.repository.relative_path,
                "source_node": node.name,
                "repository_created": created,
                "copied": copied,
                "bytes_fetched": source.bytes_received,
                "checksum": checksum,
            },
        )
        return repository_pb2.ReplicateRepositoryResponse(
            created=created, bytes_fetched=source.bytes_received, checksum=checksum, copied=copied
        )


async def _replicate(
    target: Path,
    relative: str,
    source: SourceRepository,
    copy_limit: int,
    stash: DirectoryStash | None,
) -> tuple[bool, bool, str | None]:
    """Make `target` a mirror of `source`: (whether it had to be created, whether the
    objects were copied, its checksum when refs were mirrored). Object files up to
    `copy_limit` bytes are copied rather than fetched (node.replica_copy), with the
    directories of `stash` (node.dir_stash)."""
    # On its way to a copy's check from now on: checks that start meanwhile wait for it
    # a little, to share one git fsck (node.copy_check).
    async with _exclusive(target), source:
        with copy_check.checker().expected():
            return await _replicate_locked(target, relative, source, copy_limit, stash)


async def _replicate_locked(
    target: Path, relative: str, source: SourceRepository, copy_limit: int, stash: DirectoryStash | None
) -> tuple[bool, bool, str | None]:
    created = not is_bare_repository(target)
    if created and _occupied(target):
        raise FailedPreconditionError(f"target path is not a repository: {quoted(relative)}")
    info = await source.export(copy_limit)  # NotFoundError when the source does not exist
    empty = created and info.ref_count == 0
    # HEAD's symbolic target as the source reads it from disk ("HEAD": detached)
    head: str | None = info.default_branch if info.default_branch != "HEAD" else None
    if head is not None and not (head.startswith("refs/") and pygit2.reference_is_valid_name(head)):
        raise FailedPreconditionError(f"source HEAD is not a valid ref: {quoted(head)}")
    if created:
        copied, checksum = await _copy_new(target, relative, None if empty else source, head, info, stash)
    else:
        copied, checksum = await _mirror(target, source, head, info, stash)
    return created, copied, checksum


def _occupied(path: Path) -> bool:
    """Whether anything (even a dangling symbolic link) is at `path`."""
    return path.exists() or path.is_symlink()


async def _stdin_of(
    first: repository_pb2.UploadPackSessionRequest,
    rest: AsyncIterator[repository_pb2.UploadPackSessionRequest],
) -> AsyncIterator[bytes]:
    yield first.stdin
    async for request in rest:
        yield request.stdin


async def _forward_stdout(
    pipe: GitPipe, out: asyncio.Queue[repository_pb2.UploadPackSessionResponse | None]
) -> None:
    async for chunk in pipe.stdout_chunks():
        await out.put(repository_pb2.UploadPackSessionResponse(stdout=chunk))
    status = await pipe.wait()
    await out.put(repository_pb2.UploadPackSessionResponse(exited=True, exit_status=status))
    await out.put(None)


def replicating(path: Path) -> bool:
    """Whether a replication into `path` runs in this process (node.janitor asks it from
    its sweep's thread: a dict lookup and a flag, no change)."""
    lock = _locks.get(path)
    return lock is not None and lock.locked()


@contextlib.asynccontextmanager
async def _exclusive(path: Path) -> AsyncIterator[None]:
    """One replication of `path` at a time in this process."""
    lock = _locks.get(path)
    if lock is None:
        lock = _locks[path] = asyncio.Lock()
    async with lock:
        yield


async def _copy_new(
    target: Path,
    relative: str,
    source: SourceRepository | None,
    head: str | None,
    export: repository_pb2.ExportRepositoryResponse,
    stash: DirectoryStash | None,
) -> tuple[bool, str | None]:
    """A full copy into a temporary sibling, renamed to `target` when complete; without
    `source` (it has no refs) only HEAD is set: nothing to fetch. A HEAD under refs/
    (the usual case) is written with the new repository, without a git process."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(target, "replicate")
    try:
        if head is not None:  # validated by the caller: a ref name under refs/
            init_bare_repository(temp, head)
        else:  # detached source HEAD: git's default HEAD, as before the fetch
            await run_git(["init", "--bare", "--quiet", str(temp)])
        copied, checksum = False, None
        if source is not None:
            copied, checksum = await _mirror(temp, source, head, export, stash)
        try:
            os.rename(temp, target)
        except OSError as exc:  # created meanwhile: a retry fetches into it
            raise UnavailableError(f"repository appeared during replication: {quoted(relative)}") from exc
        return copied, checksum
    finally:
        if temp.exists():
            await asyncio.to_thread(shutil.rmtree, temp, True)


async def _mirror(
    repo: Path,
    source: SourceRepository,
    head: str | None,
    export: repository_pb2.ExportRepositoryResponse,
    stash: DirectoryStash | None,
) -> tuple[bool, str]:
    """Copy (`export` when copyable) or else fetch every ref of `source` into `repo`
    (pruning the others), then set HEAD: (whether it was a copy, the refs' checksum)."""
    copied = await _copied(repo, source, export, stash)
    if not copied:
        await _fetch(repo, source)
    loose_over, head_set, checksum = await asyncio.to_thread(_settled, repo, head)
    if loose_over:
        await run_git(["pack-refs", "--all"], git_dir=repo)
    if not head_set:
        await run_git(["symbolic-ref", "HEAD", str(head)], git_dir=repo)
    return copied, checksum


def _settled(repo: Path, head: str | None) -> tuple[bool, bool, str]:
    """Blocking, once refs are mirrored (one hand-off to a thread for the three): whether
    `repo` holds more than LOOSE_REFS_LIMIT loose refs, whether HEAD is as wanted (None:
    left as it is), and the refs' checksum (packing refs or moving HEAD changes none)."""
    loose_over = _loose_refs_over(repo, LOOSE_REFS_LIMIT)
    head_set = head is None or head_points_at(repo, head)
    return loose_over, head_set, repository_checksum(pygit2.Repository(str(repo)))


async def _copied(
    repo: Path,
    source: SourceRepository,
    export: repository_pb2.ExportRepositoryResponse,
    stash: DirectoryStash | None,
) -> bool:
    """Whether `export`'s files and refs are now in `repo` (node.replica_copy); False when
    it was not copyable or the copy was refused or failed (the caller fetches: git then
    reports any error in its own words, and mends whatever the copy left half done)."""
    if not export.copyable:
        return False
    try:
        applied = await copy_into(repo, export, stash)
    except (CopyRefused, OSError, pygit2.GitError, ValueError) as exc:
        log.info("replication copy refused, fetching", extra={"reason": hide_paths(str(exc))})
        return False
    source.bytes_received += applied.bytes_received
    return True


async def _fetch(repo: Path, source: SourceRepository) -> None:
    """`git fetch` of every ref of `source` into `repo`, over the tunnel (module doc)."""
    async with source.tunnel() as link:
        config = [arg for option in FETCH_CONFIG for arg in ("-c", option)]
        result = await run_git(
            [*config, "fetch", *FETCH_FLAGS, TUNNEL_PLACEHOLDER, MIRROR_REFSPEC],
            git_dir=repo,
            env=_insteadof_env(link.url),
            check=False,
        )
    if link.error is not None:
        raise link.error
    if result.exit_code != 0:
        stderr = result.stderr + source.stderr_tail
        if (finding := fsck.rejection(result.stderr)) is not None:
            stderr += f"\nrejected by the fsck policy: {finding}".encode()
        raise GitCommandError(["fetch"], result.exit_code, stderr)


def _insteadof_env(url: str) -> dict[str, str]:
    """git's environment making TUNNEL_PLACEHOLDER stand for `url` (GIT_CONFIG_COUNT:
    command-line configuration that is not on the command line)."""
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{url}.insteadOf",
        "GIT_CONFIG_VALUE_0": TUNNEL_PLACEHOLDER,
    }


def _loose_refs_over(repo: Path, limit: int) -> bool:
    """Whether `repo` holds more than `limit` loose ref files (stops counting there)."""
    count = 0
    for _root, _dirs, files in os.walk(repo / "refs"):
        count += len(files)
        if count > limit:
            return True
    return False
