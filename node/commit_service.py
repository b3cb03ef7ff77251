"""CommitService on a storage node: commits, history pages, tree entries and blobs.

Objects are read with pygit2 in worker threads (history order comes from `git rev-list`,
so pages follow git's own order exactly); blob data is streamed from `git cat-file` in
CHUNK_SIZE pieces, never held whole.

Errors: INVALID_ARGUMENT for an empty, option-like (`-...`) or unparsable revision, a
malformed oid or path, a bad page token or a bad limit; NOT_FOUND for a revision, path or
object that does not exist, or a revision that is not a commit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pygit2

from common.errors import GitraftError, InvalidArgumentError, NotFoundError
from gitraft.v1 import commit_pb2, commit_pb2_grpc, shared_pb2
from node.git import run_git
from node.pipes import GitPipe
from node.storage import Storage

CHUNK_SIZE = 64 * 1024
CHILDREN_PER_MESSAGE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_OID = re.compile(r"[0-9a-f]{40}")
_ENTRY_TYPES = {
    "blob": commit_pb2.TreeEntryResponse.BLOB,
    "tree": commit_pb2.TreeEntryResponse.TREE,
    "commit": commit_pb2.TreeEntryResponse.COMMIT,
}


class CommitServicer(commit_pb2_grpc.CommitServiceServicer):
    """Serves CommitService for one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def FindCommit(
        self, request: commit_pb2.FindCommitRequest, context: grpc.aio.ServicerContext
    ) -> commit_pb2.FindCommitResponse:
        path = self.storage.existing_path_of(request.repository)
        commit = await asyncio.to_thread(find_commit, path, request.revision)
        return commit_pb2.FindCommitResponse(commit=commit)

    async def ListCommits(
        self, request: commit_pb2.ListCommitsRequest, context: grpc.aio.ServicerContext
    ) -> commit_pb2.ListCommitsResponse:
        """One page of `git rev-list <revision>` (newest first). A page token pins the
        starting commit of the first page, so `revision` is ignored once one is given."""
        if request.limit > MAX_PAGE_SIZE:
            raise InvalidArgumentError(f"limit above {MAX_PAGE_SIZE}: {request.limit!r}")
        limit = request.limit or DEFAULT_PAGE_SIZE
        path = self.storage.existing_path_of(request.repository)
        return await list_commits(path, request.revision, request.page_token, limit)

    async def TreeEntry(
        self, request: commit_pb2.TreeEntryRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[commit_pb2.TreeEntryResponse]:
        """The entry at `path` ("" = the root tree). A blob: header then data chunks (at
        most `limit` bytes when set; `size` is the full size). A tree: its children in
        batches (`size` 0). A submodule (COMMIT): the header only."""
        limit = check_limit(request.limit)
        path = self.storage.existing_path_of(request.repository)
        messages = await asyncio.to_thread(read_tree_entry, path, request.revision, request.path)
        if messages[0].type != commit_pb2.TreeEntryResponse.BLOB:
            for message in messages:
                yield message
            return
        header, first = messages[0], True
        async for size, chunk in blob_chunks(path, header.oid, limit):
            if first:
                header.size, header.data, first = size, chunk, False
                yield header
            else:
                yield commit_pb2.TreeEntryResponse(data=chunk)

    async def GetBlob(
        self, request: commit_pb2.GetBlobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[commit_pb2.GetBlobResponse]:
        """oid and full size first, then at most `limit` bytes (0 = all) in chunks."""
        limit = check_limit(request.limit)
        oid = check_oid(request.oid)
        path = self.storage.existing_path_of(request.repository)
        first = True
        async for size, chunk in blob_chunks(path, oid, limit):
            yield (
                commit_pb2.GetBlobResponse(oid=oid, size=size, data=chunk)
                if first
                else (commit_pb2.GetBlobResponse(data=chunk))
            )
            first = False


def check_limit(limit: int) -> int:
    if limit < 0:
        raise InvalidArgumentError(f"negative limit: {limit!r}")
    return limit


def check_oid(oid: str) -> str:
    """A full object id in lower case, or InvalidArgumentError."""
    if not _OID.fullmatch(oid.lower()):
        raise InvalidArgumentError(f"invalid object id: {oid!r}")
    return oid.lower()


async def blob_chunks(path: Path, oid: str, limit: int) -> AsyncIterator[tuple[int, bytes]]:
    """Blob `oid` of the repository at `path` as (full size, chunk) pairs: at most `limit`
    bytes (0 = all) in CHUNK_SIZE pieces, at least one (empty) piece. Streamed from
    `git cat-file --batch`, so memory holds one chunk whatever the blob's size.
    NotFoundError when the object is missing, InvalidArgumentError when not a blob."""

    async def request() -> AsyncIterator[bytes]:
        yield f"{oid}\n".encode()

    async with GitPipe(["cat-file", "--batch"], cwd=path, chunks=request()) as pipe:
        header = (await pipe.readline()).decode(errors="replace").split()
        if len(header) != 3:
            raise NotFoundError(f"blob not found: {oid!r}")
        if header[1] != "blob":
            raise InvalidArgumentError(f"object is a {header[1]}, not a blob: {oid!r}")
        size = int(header[2])
        left = min(size, limit) if limit else size
        yield size, await _read_exactly(pipe, min(left, CHUNK_SIZE))
        left -= CHUNK_SIZE
        while left > 0:
            yield size, await _read_exactly(pipe, min(left, CHUNK_SIZE))
            left -= CHUNK_SIZE


async def _read_exactly(pipe: GitPipe, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await pipe.read(size - len(data))
        if not chunk:
            raise GitraftError(f"git cat-file ended early: {pipe.stderr[-200:]!r}")
        data += chunk
    return data


def resolve_commit(repo: pygit2.Repository, revision: str) -> pygit2.Commit:
    """The commit `revision` names (tags peeled), or Invalid/NotFound errors."""
    if not revision or revision.startswith("-") or "\x00" in revision:
        raise InvalidArgumentError(f"invalid revision: {revision!r}")
    try:
        obj = repo.revparse_single(revision)
    except KeyError as exc:
        raise NotFoundError(f"revision not found: {revision!r}") from exc
    except (pygit2.GitError, ValueError) as exc:
        raise InvalidArgumentError(f"invalid revision: {revision!r}") from exc
    try:
        return obj.peel(pygit2.Commit)
    except (pygit2.GitError, ValueError, TypeError) as exc:
        raise NotFoundError(f"revision is not a commit: {revision!r}") from exc


def find_commit(path: Path, revision: str) -> commit_pb2.Commit:
    """Blocking: the commit `revision` names in the repository at `path`."""
    return commit_message(resolve_commit(pygit2.Repository(str(path)), revision))


def commit_message(commit: pygit2.Commit) -> commit_pb2.Commit:
    raw = commit.raw_message
    return commit_pb2.Commit(
        id=str(commit.id),
        tree_id=str(commit.tree_id),
        parent_ids=[str(p) for p in commit.parent_ids],
        author=signature(commit.author),
        committer=signature(commit.committer),
        message=raw,
        subject=raw.decode(errors="replace").split("\n", 1)[0].strip(),
    )


def signature(sig: pygit2.Signature) -> shared_pb2.Signature:
    return shared_pb2.Signature(
        name=sig.raw_name.decode(errors="replace"),
        email=sig.raw_email.decode(errors="replace"),
        time=sig.time,
        offset_minutes=sig.offset,
    )


def encode_page_token(start: str, offset: int) -> str:
    """Opaque to clients: the first page's starting commit and how many to skip."""
    return base64.urlsafe_b64encode(f"v1:{start}:{offset}".encode()).decode()


def decode_page_token(token: str) -> tuple[str, int]:
    try:
        version, start, offset = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if version != "v1" or not _OID.fullmatch(start) or int(offset) < 1:
            raise ValueError(token)
        return start, int(offset)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidArgumentError(f"invalid page token: {token!r}") from exc


def resolve_page(path: Path, revision: str, page_token: str) -> tuple[str, int]:
    """Blocking: (starting commit, commits to skip) from the token or the revision."""
    repo = pygit2.Repository(str(path))
    if not page_token:
        return str(resolve_commit(repo, revision).id), 0
    start, offset = decode_page_token(page_token)
    if not isinstance(repo.get(start), pygit2.Commit):
        raise InvalidArgumentError(f"page token names an unknown commit: {page_token!r}")
    return start, offset


async def list_commits(
    path: Path, revision: str, page_token: str, limit: int
) -> commit_pb2.ListCommitsResponse:
    """One page of history (see ListCommits): `git rev-list` gives git's own order."""
    start, offset = await asyncio.to_thread(resolve_page, path, revision, page_token)
    args = ["rev-list", f"--skip={offset}", f"--max-count={limit + 1}", start]
    oids = (await run_git(args, git_dir=path)).text.split()
    commits = await asyncio.to_thread(load_commits, path, oids[:limit])
    more = len(oids) > limit
    return commit_pb2.ListCommitsResponse(
        commits=commits, next_page_token=encode_page_token(start, offset + limit) if more else ""
    )


def load_commits(path: Path, oids: list[str]) -> list[commit_pb2.Commit]:
    """Blocking: the commits `oids`, in that order."""
    repo = pygit2.Repository(str(path))
    return [commit_message(repo[oid].peel(pygit2.Commit)) for oid in oids]


def clean_tree_path(path: str) -> str:
    """`path` without surrounding slashes; "" for the root. InvalidArgumentError for empty,
    `.` or `..` segments and NUL."""
    clean = path.strip("/")
    if "\x00" in clean or (clean and any(p in ("", ".", "..") for p in clean.split("/"))):
        raise InvalidArgumentError(f"invalid path: {path!r}")
    return clean


def read_tree_entry(path: Path, revision: str, entry_path: str) -> list[commit_pb2.TreeEntryResponse]:
    """Blocking: the TreeEntry response messages for `entry_path` at `revision`; for a
    blob, only the header without size or data (the caller streams those)."""
    clean = clean_tree_path(entry_path)
    repo = pygit2.Repository(str(path))
    tree = resolve_commit(repo, revision).tree
    if not clean:
        return tree_messages(tree, pygit2.enums.FileMode.TREE)
    try:
        entry = tree[clean]
    except KeyError as exc:
        raise NotFoundError(f"path not found at {revision!r}: {entry_path!r}") from exc
    kind = _ENTRY_TYPES[entry.type_str]
    if kind == commit_pb2.TreeEntryResponse.TREE:
        subtree = repo.get(entry.id)
        if not isinstance(subtree, pygit2.Tree):
            raise NotFoundError(f"tree not found at {revision!r}: {entry_path!r}")
        return tree_messages(subtree, entry.filemode)
    return [commit_pb2.TreeEntryResponse(type=kind, oid=str(entry.id), mode=entry.filemode)]


def tree_messages(tree: pygit2.Tree, mode: int) -> list[commit_pb2.TreeEntryResponse]:
    """A tree's header and its children, CHILDREN_PER_MESSAGE per message."""
    children = [
        commit_pb2.TreeEntryResponse.Child(
            name=e.name, oid=str(e.id), type=_ENTRY_TYPES[e.type_str], mode=e.filemode
        )
        for e in tree
    ]
    batches = [children[i : i + CHILDREN_PER_MESSAGE] for i in range(0, len(children), CHILDREN_PER_MESSAGE)]
    messages = [commit_pb2.TreeEntryResponse(children=batch) for batch in batches or [[]]]
    messages[0].type = commit_pb2.TreeEntryResponse.TREE
    messages[0].oid = str(tree.id)
    messages[0].mode = mode
    return messages
