"""RefService on a storage node: list refs, find the default branch, update refs atomically.

Refs are read with pygit2 in a worker thread. Updates go through
`git update-ref --stdin` with explicit `start` / `prepare` / `commit` verbs, so they are
all-or-none and git's `reference-transaction` hook runs (strong-consistency votes hook
in there); pygit2 writes would bypass the hook.

Error contract of UpdateReferences:
- INVALID_ARGUMENT: no updates, a ref name git would refuse (check-ref-format) or not
  under refs/, the same ref twice, two refs that conflict (a/b and a/b/c), a malformed
  oid, a new oid the repository lacks, a non-commit on a branch, or deleting with an
  all-zero old value.
- FAILED_PRECONDITION: an expected old value does not match (including "must not exist"
  for an existing ref), or a directory/file conflict with an existing ref.
- UNAVAILABLE: a ref is locked by a concurrent update; nothing was applied, retry.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import grpc
import pygit2

from common.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from gitraft.v1 import ref_pb2, ref_pb2_grpc
from node.git import GitCommandError, run_git
from node.storage import Storage

ZERO_OID = "0" * 40
REFS_PER_MESSAGE = 100
_OID = re.compile(r"[0-9a-f]{40}")
# update-ref failures that mean "the refs are not as the caller expected".
_PRECONDITION_MARKERS = ("cannot lock ref", "reference already exists", "is at ", "exists; cannot create")


class RefServicer(ref_pb2_grpc.RefServiceServicer):
    """Serves RefService for one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def ListRefs(
        self, request: ref_pb2.ListRefsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ref_pb2.ListRefsResponse]:
        """Refs sorted by name, filtered by prefix patterns; HEAD first when asked for."""
        path = self.storage.existing_path_of(request.repository)
        refs = await asyncio.to_thread(list_refs, path, list(request.patterns), request.head)
        for start in range(0, len(refs), REFS_PER_MESSAGE):
            yield ref_pb2.ListRefsResponse(refs=refs[start : start + REFS_PER_MESSAGE])

    async def FindDefaultBranch(
        self, request: ref_pb2.FindDefaultBranchRequest, context: grpc.aio.ServicerContext
    ) -> ref_pb2.FindDefaultBranchResponse:
        """The ref HEAD names and its commit ("" when unborn); name "HEAD" when detached."""
        path = self.storage.existing_path_of(request.repository)
        head = await asyncio.to_thread(read_head, path)
        return ref_pb2.FindDefaultBranchResponse(name=head.symbolic_target or "HEAD", target=head.target)

    async def UpdateReferences(
        self, request: ref_pb2.UpdateReferencesRequest, context: grpc.aio.ServicerContext
    ) -> ref_pb2.UpdateReferencesResponse:
        """All updates or none, each checked against its expected old value."""
        updates = [normalise_update(u) for u in request.updates]
        check_no_duplicates(updates)
        path = self.storage.existing_path_of(request.repository)
        await asyncio.to_thread(check_new_objects, path, updates)
        try:
            await run_git(["update-ref", "--stdin"], git_dir=path, stdin=transaction_script(updates))
        except GitCommandError as exc:
            raise translate_update_error(exc) from exc
        return ref_pb2.UpdateReferencesResponse()


def list_refs(path: Path, patterns: list[str], head: bool) -> list[ref_pb2.Ref]:
    """Blocking: the refs of the repository at `path` (see ListRefs)."""
    repo = pygit2.Repository(str(path))
    names = sorted(n for n in repo.listall_references() if n != "HEAD")
    if patterns:
        names = [n for n in names if n.startswith(tuple(patterns))]
    refs = [ref for ref in (_read_ref(repo, n) for n in names) if ref is not None]
    if head:
        refs.insert(0, _head_of(repo))
    return refs


def read_head(path: Path) -> ref_pb2.Ref:
    """Blocking: HEAD of the repository at `path`."""
    return _head_of(pygit2.Repository(str(path)))


def _head_of(repo: pygit2.Repository) -> ref_pb2.Ref:
    ref = _read_ref(repo, "HEAD")
    return ref if ref is not None else ref_pb2.Ref(name="HEAD")


def _read_ref(repo: pygit2.Repository, name: str) -> ref_pb2.Ref | None:
    """A ref as the proto shows it; None when it vanished meanwhile."""
    try:
        ref = repo.lookup_reference(name)
    except (KeyError, pygit2.InvalidSpecError):
        return None
    if ref.type != pygit2.enums.ReferenceType.SYMBOLIC:
        return ref_pb2.Ref(name=name, target=str(ref.target))
    try:
        target = str(ref.resolve().target)
    except (KeyError, pygit2.GitError):
        target = ""  # unborn branch or dangling symbolic ref
    return ref_pb2.Ref(name=name, target=target, symbolic_target=str(ref.target))


def normalise_update(update: ref_pb2.ReferenceUpdate) -> ref_pb2.ReferenceUpdate:
    """The update with lower-case oids, or InvalidArgumentError."""
    name = update.ref
    if not name.startswith("refs/") or not pygit2.reference_is_valid_name(name):
        raise InvalidArgumentError(f"invalid ref name: {name!r}")
    new = update.new_oid.lower()
    old = update.old_oid.lower()
    if not _OID.fullmatch(new):
        raise InvalidArgumentError(f"invalid new object id for {name!r}: {update.new_oid!r}")
    if old and not _OID.fullmatch(old):
        raise InvalidArgumentError(f"invalid old object id for {name!r}: {update.old_oid!r}")
    if new == ZERO_OID and old == ZERO_OID:
        raise InvalidArgumentError(f"cannot delete {name!r} expecting it not to exist")
    return ref_pb2.ReferenceUpdate(ref=name, old_oid=old, new_oid=new)


def check_no_duplicates(updates: list[ref_pb2.ReferenceUpdate]) -> None:
    if not updates:
        raise InvalidArgumentError("no reference updates")
    seen: set[str] = set()
    for update in updates:
        if update.ref in seen:
            raise InvalidArgumentError(f"ref updated twice: {update.ref!r}")
        seen.add(update.ref)


def check_new_objects(path: Path, updates: Iterable[ref_pb2.ReferenceUpdate]) -> None:
    """Blocking: every new oid exists; branches may only point at commits."""
    repo = pygit2.Repository(str(path))
    for update in updates:
        if update.new_oid == ZERO_OID:
            continue
        obj = repo.get(update.new_oid)
        if obj is None:
            raise InvalidArgumentError(f"object not found: {update.new_oid!r}")
        if update.ref.startswith("refs/heads/") and obj.type != pygit2.enums.ObjectType.COMMIT:
            raise InvalidArgumentError(f"branch {update.ref!r} must point at a commit: {update.new_oid!r}")


def transaction_script(updates: Iterable[ref_pb2.ReferenceUpdate]) -> bytes:
    """`git update-ref --stdin` input: one start/prepare/commit transaction."""
    lines = ["start"]
    for u in updates:
        if u.new_oid == ZERO_OID:
            lines.append(f"delete {u.ref} {u.old_oid}".rstrip())
        elif u.old_oid == ZERO_OID:
            lines.append(f"create {u.ref} {u.new_oid}")
        else:
            lines.append(f"update {u.ref} {u.new_oid} {u.old_oid}".rstrip())
    lines += ["prepare", "commit"]
    return ("\n".join(lines) + "\n").encode()


def translate_update_error(exc: GitCommandError) -> Exception:
    """FAILED_PRECONDITION for old-value mismatches and ref conflicts, UNAVAILABLE for a
    ref locked by a concurrent update (nothing was applied: safe to retry), INVALID_ARGUMENT
    for updates that conflict with each other; anything else as is (INTERNAL)."""
    text = exc.stderr_text.strip()
    detail = text.splitlines()[-1].removeprefix("fatal: ") if text else str(exc)
    if "at the same time" in text:
        return InvalidArgumentError(f"conflicting ref updates: {detail}")
    if ".lock': File exists" in text:
        return UnavailableError(f"ref locked by a concurrent update: {detail}")
    if any(marker in text for marker in _PRECONDITION_MARKERS):
        return FailedPreconditionError(f"reference update refused: {detail}")
    return exc
