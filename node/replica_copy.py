"""Replication of a small repository by copying its object files.

A replication that fetches (node.replication) runs five git processes - `git fetch`,
`unpack-objects` or `index-pack` and the connectivity check's `rev-list` on the target,
`upload-pack` and `pack-objects` on the source - which is most of what replicating a
small repository costs. For a repository whose object files fit in the target's
`replication_copy_limit`, the target asks the source for them instead (ExportRepository,
one unary call that also answers what RepositoryInfo did) and runs one git process:

- Source (`export_repository`): HEAD's target and every ref (symbolic ones resolved),
  read *before* the object files are listed, then the loose objects and the packs that
  have their index - never a temporary (`tmp_*`), a push's quarantine
  (`tmp_objdir-incoming-*`, whose objects fsck has not passed yet) or a pack still
  being written (no `.idx`). Not copyable (refs only): files and refs over the limit
  (file_cost, ref_cost), a file that vanished while read (a concurrent repack),
  alternates, a symbolic link among the object files (never followed), an unreadable
  ref or one not UTF-8, more than MAX_TIPS distinct tips.
- Target (`copy_into`): the files the replica lacks go to a quarantine beside it,
  where `git fsck --strict` checks them by the push policy (node.fsck: the same checks
  as a push and a fetch), checks every hash and pack checksum, and checks that every
  object reachable from the exported refs is present (a concurrent repack on the
  source may have hidden one); then they are moved in and the refs mirrored exactly
  (deletions first, so a directory/file conflict such as refs/heads/a ->
  refs/heads/a/b resolves). Anything refused raises CopyRefused before a ref changed
  or a file moved in, and the caller fetches instead (git then names any problem in
  its own words).

A copy may bring objects no ref reaches (a fetch would not): they passed the same
checks, and gc treats them as any unreachable object.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pygit2

from common.paths import TEMP_MARKER
from gitraft.v1 import repository_pb2
from node import copy_check, dir_stash
from node.dir_stash import DirectoryStash
from node.storage import symbolic_head

# Bytes counted against the limit besides a ref's name (its oid, the message's framing)
# and besides an object file's name and data (framing): the whole answer stays within
# the limit but for its three header fields, so that the largest (MAX_REPLICATION_COPY_
# LIMIT) stays under the nodes' gRPC message size.
REF_FRAMING = 48
FILE_FRAMING = 16
_LOOSE = re.compile(r"[0-9a-f]{2}/[0-9a-f]{38}")
_PACK = re.compile(r"pack/pack-[0-9a-f]{40}\.(pack|idx)")
# A copy's tips are git fsck's arguments: past this many distinct ones, fetch instead.
MAX_TIPS = 2000
_HEX2 = re.compile(r"[0-9a-f]{2}")
_HEX38 = re.compile(r"[0-9a-f]{38}")
_OID = re.compile(r"[0-9a-f]{40}")
_T = TypeVar("_T")


class CopyRefused(Exception):
    """The export cannot be applied as it is (nothing about refs changed): fetch instead."""


# --- source ---------------------------------------------------------------------------


def export_repository(path: Path, limit: int) -> repository_pb2.ExportRepositoryResponse:
    """The repository at `path` as ExportRepository answers it (see module doc).
    Blocking: reads files; call it from a worker thread."""
    repo = pygit2.Repository(str(path))
    default_branch = symbolic_head(repo)
    names = [name for name in repo.listall_references() if name != "HEAD"]
    answer = repository_pb2.ExportRepositoryResponse(default_branch=default_branch, ref_count=len(names))
    refs_cost = sum(ref_cost(name) for name in names)
    if limit <= 0 or refs_cost > limit:
        return answer
    objects = path / "objects"
    if (objects / "info" / "alternates").exists():
        return answer
    try:
        refs = [
            repository_pb2.ExportedRef(name=name, oid=str(repo.lookup_reference(name).resolve().target))
            for name in names
        ]
        if len({ref.oid for ref in refs}) > MAX_TIPS:
            return answer  # more tips than a copy takes (copy_into refuses it)
        files = _object_files(objects, limit - refs_cost)
    except (KeyError, ValueError, pygit2.GitError, OSError):
        return answer  # a ref deleted or dangling, a file gone (repack): fetch instead
    if files is None:
        return answer
    answer.copyable = True
    answer.refs.extend(refs)
    answer.files.extend(files)
    return answer


def ref_cost(name: str) -> int:
    """Bytes a ref named `name` takes of an export's limit (a name that is not UTF-8 has
    no place in a protobuf string: export_repository then answers refs only)."""
    return len(name.encode(errors="surrogateescape")) + REF_FRAMING  # as pygit2 decodes it


def file_cost(name: str, size: int) -> int:
    """Bytes an object file named `name` (under objects/) of `size` bytes takes of an
    export's limit."""
    return len(name) + size + FILE_FRAMING


def _object_files(objects: Path, budget: int) -> list[repository_pb2.ObjectFile] | None:
    """The loose objects and indexed packs under `objects`, read; None past `budget`
    bytes (file_cost), or for a symbolic link among them (never followed: it may lead
    out of the repository; a fetch reads such a repository as git does)."""
    listed: list[tuple[str, Path]] = []
    total = 0
    with os.scandir(objects) as entries:
        fanout = [e for e in entries if len(e.name) == 2 and _HEX2.fullmatch(e.name)]
    for directory in fanout:
        if directory.is_symlink():
            return None
        if not directory.is_dir(follow_symlinks=False):
            continue
        with os.scandir(directory.path) as entries:
            for entry in entries:
                if not (len(entry.name) == 38 and _HEX38.fullmatch(entry.name)):
                    continue
                if entry.is_symlink():
                    return None
                if entry.is_file(follow_symlinks=False):
                    name = f"{directory.name}/{entry.name}"
                    total += file_cost(name, entry.stat(follow_symlinks=False).st_size)
                    listed.append((name, Path(entry.path)))
        if total > budget:
            return None
    pack_dir = objects / "pack"
    if pack_dir.is_symlink():
        return None
    names = set(os.listdir(pack_dir)) if pack_dir.is_dir() else set()
    for name in sorted(names):
        if not (name.startswith("pack-") and name.endswith(".pack")):
            continue
        index = name[: -len(".pack")] + ".idx"
        if index not in names or not _PACK.fullmatch(f"pack/{name}"):
            continue  # still being written, or not a name git gives
        for part in (name, index):
            status = os.lstat(pack_dir / part)
            if not stat.S_ISREG(status.st_mode):
                return None
            total += file_cost(f"pack/{part}", status.st_size)
            listed.append((f"pack/{part}", pack_dir / part))
        if total > budget:
            return None
    return [repository_pb2.ObjectFile(name=name, data=_read_unfollowed(file)) for name, file in listed]


def _read_unfollowed(path: Path) -> bytes:
    """The bytes of the file at `path`; OSError if it is (became) a symbolic link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        return file.read()


# --- target ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """What `copy_into` did: object bytes received, files added, refs changed."""

    bytes_received: int
    files_added: int
    refs_changed: int


async def copy_into(
    repo: Path, export: repository_pb2.ExportRepositoryResponse, stash: DirectoryStash | None = None
) -> Applied:
    """Make the bare repository at `repo` hold `export`'s objects and exactly its refs
    (HEAD untouched). The files it lacks go to a quarantine beside it, are checked there
    by `git fsck` (node.copy_check: the push policy, every object's hash, each pack
    against its checksum, and every object reachable from the new refs present; shared
    with the copies that reach their check together), then moved in;
    then refs are mirrored. An export without refs brings no file (no fsck would check
    it). CopyRefused, with no ref changed and nothing moved in, when the export is not
    copyable, malformed, or fails the check. The directories it makes and removes come
    from and go to `stash` (node.dir_stash) when given."""
    if not export.copyable:
        raise CopyRefused("the source did not export its objects")
    desired = _desired_refs(export)
    objects = repo / "objects"
    # Beside `repo` (a rename moves files in), named apart from it: `repo` may be a new
    # replica's temporary, whose name leaves no room for another suffix below NAME_MAX.
    quarantine = repo.parent / f"{TEMP_MARKER}copy-{secrets.token_hex(6)}"
    tips = sorted(set(desired.values()))
    # Without a tip git fsck would not run: no file is brought unchecked (none is needed).
    files = export.files if tips else ()
    try:  # each blocking step is one hand-off to a thread: they cost more than the work
        added = await _to_thread_to_its_end(_write_quarantine, objects, quarantine, files, stash)
        try:
            await copy_check.checker().check(repo, quarantine, tips, _object_count(files))
        except copy_check.CheckFailed as exc:
            raise CopyRefused(f"the copied objects fail git fsck: {exc}") from None
        changed = await _to_thread_to_its_end(_move_in_and_mirror, quarantine, objects, repo, desired, stash)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, quarantine, True)
        raise
    return Applied(sum(len(f.data) for f in export.files), added, changed)


async def _to_thread_to_its_end(function: Callable[..., _T], *args: Any) -> _T:
    """`function(*args)` in a worker thread, waited for to its end even when the caller
    is cancelled (the cancellation is raised then): a thread writing the repository
    must not outlive the replication holding it (its lock, its quarantine's removal)."""
    step = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(step)
    except asyncio.CancelledError:
        while not step.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({step})
        raise


def _desired_refs(export: repository_pb2.ExportRepositoryResponse) -> dict[str, str]:
    desired: dict[str, str] = {}
    for ref in export.refs:
        if not (ref.name.startswith("refs/") and pygit2.reference_is_valid_name(ref.name)):
            raise CopyRefused(f"invalid ref name {ref.name!r}")
        if not _OID.fullmatch(ref.oid):
            raise CopyRefused(f"invalid object id for {ref.name!r}")
        desired[ref.name] = ref.oid
    if len(set(desired.values())) > MAX_TIPS:
        raise CopyRefused(f"more than {MAX_TIPS} distinct ref targets")
    return desired


def _object_count(files: Iterable[repository_pb2.ObjectFile]) -> int:
    """Objects in an export's files (loose ones, and each pack's by its index): what a
    walk from its tips may read; -1 when an index does not tell."""
    count = 0
    for f in files:
        if f.name.endswith(".idx"):
            in_pack = copy_check.pack_object_count(bytes(f.data))
            if in_pack < 0:
                return -1
            count += in_pack
        elif not f.name.endswith(".pack"):
            count += 1
    return count


def _write_quarantine(
    objects: Path,
    quarantine: Path,
    files: Iterable[repository_pb2.ObjectFile],
    stash: DirectoryStash | None = None,
) -> int:
    """Write the files of `files` that `objects` lacks under `quarantine` (created, as
    its subdirectories, from `stash`; the others are freshened); CopyRefused for a name
    that is no loose object or pack file, or a pack without its index. Returns the number
    written."""
    parts: dict[str, set[str]] = {}
    dir_stash.mkdir(stash, quarantine)
    made = {quarantine}
    written = 0
    for f in files:
        name = str(f.name)
        if _PACK.fullmatch(name):
            stem, kind = name.rsplit(".", 1)
            parts.setdefault(stem, set()).add(kind)
        elif not _LOOSE.fullmatch(name):
            raise CopyRefused(f"unexpected object file {name!r}")
        if _freshened(objects / name):
            continue
        path = quarantine / name
        if path.parent not in made:
            dir_stash.mkdir(stash, path.parent)
            made.add(path.parent)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)  # read-only, as git's
        with os.fdopen(descriptor, "wb") as out:
            out.write(f.data)
        written += 1
    incomplete = [stem for stem, kinds in parts.items() if kinds != {"pack", "idx"}]
    if incomplete:
        raise CopyRefused(f"{incomplete[0]} comes without its pack or its index")
    return written


def _freshened(path: Path) -> bool:
    """Whether the object file at `path` exists, its time then set to now (as git
    freshens an object it would write again): it may be unreachable and old, and a gc
    pruning before the copy's refs are mirrored must not remove it."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _move_in(quarantine: Path, objects: Path, stash: DirectoryStash | None) -> None:
    """Move every file of `quarantine` to the same place under `objects`, packs before
    their indexes (readers find a pack by its index): a directory `objects` lacks is
    moved in whole (one rename, files and all), the others file by file, their emptied
    directories and `quarantine` itself then retired to `stash` (removed without one).
    A file that appeared meanwhile under `objects` is replaced by its twin (the same
    name is the same content)."""
    with os.scandir(quarantine) as entries:
        directories = sorted(entry.name for entry in entries)
    for directory in directories:
        source = quarantine / directory
        if not os.path.lexists(objects / directory):  # a rename would replace an empty one
            try:
                os.rename(source, objects / directory)
                continue
            except OSError as exc:  # made meanwhile (ENOTEMPTY, EEXIST): file by file
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        names = sorted(os.listdir(source), key=lambda n: (n.endswith(".idx"), n))
        for name in names:
            os.rename(source / name, objects / directory / name)
        dir_stash.rmdir(stash, source)
    dir_stash.rmdir(stash, quarantine)


def _move_in_and_mirror(
    quarantine: Path, objects: Path, repo: Path, desired: dict[str, str], stash: DirectoryStash | None
) -> int:
    """`_move_in` (the quarantine removed whatever happens), then `_mirror_refs`."""
    try:
        _move_in(quarantine, objects, stash)
    except BaseException:
        shutil.rmtree(quarantine, True)
        raise
    return _mirror_refs(repo, desired)


def _mirror_refs(repo_path: Path, desired: dict[str, str]) -> int:
    """Set refs to exactly `desired` (HEAD untouched); the number changed. Deletions
    first, so that a name freed (refs/heads/a) may become a directory (refs/heads/a/b)."""
    repo = pygit2.Repository(str(repo_path))
    existing: dict[str, str | None] = {}
    for name in repo.listall_references():
        if name == "HEAD":
            continue
        ref = repo.lookup_reference(name)
        direct = ref.type == pygit2.enums.ReferenceType.DIRECT
        existing[name] = str(ref.target) if direct else None
    changed = 0
    for name in sorted(existing.keys() - desired.keys()):
        repo.references.delete(name)
        changed += 1
    for name, oid in desired.items():
        if existing.get(name) != oid:
            repo.references.create(name, pygit2.Oid(hex=oid), force=True)
            changed += 1
    return changed
