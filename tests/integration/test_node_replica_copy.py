"""node.replica_copy on real repositories (real git, no node process): what an export
holds, and every way a copy is refused - with no ref changed, nothing moved in and no
quarantine left - so that the replication falls back to `git fetch`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pygit2
import pytest

from common.paths import MAX_SEGMENT_BYTES
from gitraft.v1 import repository_pb2 as pb
from node import copy_check, replica_copy
from node.dir_stash import DirectoryStash
from node.replica_copy import CopyRefused, copy_into, export_repository, file_cost, ref_cost
from node.storage import TEMP_MARKER, init_bare_repository, temp_sibling
from tests.integration.conftest import git_cli
from tests.integration.gateway_helpers import refs_of

LIMIT = 1024 * 1024


def source_repository(tmp_path: Path) -> Path:
    """A bare repository with a pack (two commits, a tag) and loose objects (a third
    commit on another branch), HEAD at refs/heads/main."""
    work = tmp_path / "work"
    git_cli("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    for n in range(2):
        (work / f"f{n}.txt").write_text(f"{n}\n")
        git_cli("add", ".", cwd=work)
        git_cli("commit", "-q", "-m", f"c{n}", cwd=work)
    git_cli("tag", "-a", "-m", "t", "v1", cwd=work)
    source = tmp_path / "source.git"
    git_cli("clone", "-q", "--bare", str(work), str(source), cwd=tmp_path)
    git_cli("repack", "-a", "-d", "-q", cwd=source)
    git_cli("checkout", "-q", "-b", "side", cwd=work)
    (work / "side.txt").write_text("side\n")
    git_cli("add", ".", cwd=work)
    git_cli("commit", "-q", "-m", "side", cwd=work)
    git_cli("push", "-q", str(source), "side", cwd=work)
    return source


def target_repository(tmp_path: Path) -> Path:
    target = tmp_path / "target.git"
    init_bare_repository(target, "refs/heads/main")
    return target


def quarantines_left(repo: Path) -> list[str]:
    return [p.name for p in repo.parent.iterdir() if TEMP_MARKER in p.name]


def test_an_export_copies_into_an_exact_mirror(tmp_path: Path) -> None:
    source = source_repository(tmp_path)
    export = export_repository(source, LIMIT)
    assert export.copyable and export.default_branch == "refs/heads/main"
    names = sorted(f.name for f in export.files)
    assert any(n.endswith(".pack") for n in names) and any(n.endswith(".idx") for n in names)
    assert any("/" in n and not n.startswith("pack/") for n in names)  # loose objects too
    target = target_repository(tmp_path)
    applied = asyncio.run(copy_into(target, export))
    assert refs_of(target) == refs_of(source)
    assert applied.refs_changed == len(refs_of(source))
    git_cli("fsck", "--strict", "--no-dangling", cwd=target)
    assert not quarantines_left(target)
    # Again: nothing new to add, nothing to change.
    again = asyncio.run(copy_into(target, export_repository(source, LIMIT)))
    assert (again.files_added, again.refs_changed) == (0, 0)


def test_refs_deleted_and_a_directory_file_conflict_are_mirrored(tmp_path: Path) -> None:
    source = source_repository(tmp_path)
    target = target_repository(tmp_path)
    git_cli("update-ref", "refs/heads/dir/file", "main", cwd=source)
    asyncio.run(copy_into(target, export_repository(source, LIMIT)))
    git_cli("update-ref", "-d", "refs/heads/dir/file", cwd=source)
    git_cli("update-ref", "refs/heads/dir", "main", cwd=source)
    git_cli("update-ref", "-d", "refs/heads/side", cwd=source)
    asyncio.run(copy_into(target, export_repository(source, LIMIT)))
    assert refs_of(target) == refs_of(source)
    assert "refs/heads/side" not in refs_of(target)


def test_a_repository_over_the_limit_or_with_alternates_exports_refs_only(tmp_path: Path) -> None:
    source = source_repository(tmp_path)
    full = export_repository(source, LIMIT)
    size = sum(file_cost(f.name, len(f.data)) for f in full.files) + sum(ref_cost(r.name) for r in full.refs)
    refs = len(refs_of(source))
    assert export_repository(source, size).copyable
    small = export_repository(source, size - 1)
    assert not small.copyable and not small.files and not small.refs
    assert small.ref_count == refs and small.default_branch == "refs/heads/main"
    assert not export_repository(source, 0).copyable
    (source / "objects" / "info" / "alternates").write_text("/elsewhere/objects\n")
    assert not export_repository(source, LIMIT).copyable


def test_a_quarantined_push_and_a_pack_being_written_are_not_exported(tmp_path: Path) -> None:
    source = source_repository(tmp_path)
    expected = {f.name for f in export_repository(source, LIMIT).files}
    quarantine = source / "objects" / "tmp_objdir-incoming-abc123" / "ab"
    quarantine.mkdir(parents=True)
    (quarantine / ("c" * 38)).write_bytes(b"not yet checked")
    (source / "objects" / "pack" / f"pack-{'d' * 40}.pack").write_bytes(b"PACK being written")
    (source / "objects" / "pack" / "tmp_pack_xyz").write_bytes(b"temporary")
    assert {f.name for f in export_repository(source, LIMIT).files} == expected


def refused(target: Path, export: pb.ExportRepositoryResponse, match: str) -> None:
    """copy_into refuses `export`: no ref of `target` changed, no object file moved in,
    no quarantine left."""
    before_refs = refs_of(target)
    before_files = sorted(str(p.relative_to(target)) for p in (target / "objects").rglob("*") if p.is_file())
    with pytest.raises(CopyRefused, match=match):
        asyncio.run(copy_into(target, export))
    assert refs_of(target) == before_refs
    after = sorted(str(p.relative_to(target)) for p in (target / "objects").rglob("*") if p.is_file())
    assert after == before_files
    assert not quarantines_left(target)


def test_an_export_missing_an_object_is_refused(tmp_path: Path) -> None:
    """As after a repack on the source between its listing and its reads."""
    source = source_repository(tmp_path)
    export = export_repository(source, LIMIT)
    blob = git_cli("rev-parse", "side:side.txt", cwd=source).strip()  # a loose object
    export.files.remove(next(f for f in export.files if f.name == f"{blob[:2]}/{blob[2:]}"))
    refused(target_repository(tmp_path), export, f"fail git fsck: missing blob {blob}")


def test_a_changed_object_is_refused(tmp_path: Path) -> None:
    source = source_repository(tmp_path)
    export = export_repository(source, LIMIT)
    loose = next(f for f in export.files if not f.name.startswith("pack/"))
    blob = pygit2.Repository(str(source)).odb.write(pygit2.enums.ObjectType.BLOB, b"something else")
    loose.data = (source / "objects" / str(blob)[:2] / str(blob)[2:]).read_bytes()
    target = target_repository(tmp_path)
    refused(target, export, "fail git fsck")

    export = export_repository(source, LIMIT)
    pack = next(f for f in export.files if f.name.endswith(".pack"))
    pack.data = pack.data[:-21] + bytes([pack.data[-21] ^ 1]) + pack.data[-20:]
    refused(target, export, "fail git fsck")


def test_malformed_exports_are_refused(tmp_path: Path) -> None:
    source = source_repository(tmp_path)
    target = target_repository(tmp_path)
    for name in ("../../escape", "ab/../../x", "pack/pack-1.pack", "info/alternates", "ab/cd"):
        export = export_repository(source, LIMIT)
        export.files.add(name=name, data=b"x")
        refused(target, export, "unexpected object file")
    export = export_repository(source, LIMIT)
    index = next(f for f in export.files if f.name.endswith(".idx"))
    export.files.remove(index)
    refused(target, export, "without its pack or its index")
    for name, oid in (("refs/heads/../x", "a" * 40), ("HEAD", "a" * 40), ("refs/heads/ok", "zz")):
        export = export_repository(source, LIMIT)
        export.refs.add(name=name, oid=oid)
        refused(target, export, "invalid")
    refused(target, pb.ExportRepositoryResponse(copyable=False), "did not export")


def test_a_dangerous_object_is_refused_by_the_push_policy(tmp_path: Path) -> None:
    """A tree with a `.git` entry, placed on the source's disk directly (a push refuses it)."""
    source = source_repository(tmp_path)
    blob = git_cli("hash-object", "-w", "--stdin", cwd=source, stdin="x\n").strip()
    tree = git_cli("mktree", cwd=source, stdin=f"100644 blob {blob}\t.git\n").strip()
    commit = git_cli("commit-tree", tree, "-m", "dotgit", cwd=source).strip()
    git_cli("update-ref", "refs/heads/evil", commit, cwd=source)
    refused(target_repository(tmp_path), export_repository(source, LIMIT), "hasDotgit")


def test_a_source_without_refs_brings_no_unchecked_object(tmp_path: Path) -> None:
    """A source whose refs were all deleted still has its object files; with no tip,
    the copy ran no git fsck and moved them all in unchecked - a dangerous tree a push
    refuses among them. Nothing reaches them: none is brought (as a fetch brings none)."""
    source = source_repository(tmp_path)
    blob = git_cli("hash-object", "-w", "--stdin", cwd=source, stdin="x\n").strip()
    tree = git_cli("mktree", cwd=source, stdin=f"100644 blob {blob}\t.git\n").strip()
    for name in refs_of(source):
        git_cli("update-ref", "-d", name, cwd=source)
    target = target_repository(tmp_path)
    asyncio.run(copy_into(target, export_repository(source, LIMIT)))
    assert refs_of(target) == {}
    assert tree not in pygit2.Repository(str(target)).odb
    assert not quarantines_left(target)


def test_an_export_fits_its_limit_whatever_the_length_of_ref_names(tmp_path: Path) -> None:
    """Refs were counted 64 bytes each whatever their names: with long names
    the answer was many times the limit - past the 16 MiB a node's gRPC sends and
    receives (8 MiB limit or 1 MiB and ~1 KiB names), the ExportRepository call failed
    and with it the replication, which should have fetched."""
    source = source_repository(tmp_path)
    main = git_cli("rev-parse", "refs/heads/main", cwd=source).strip()
    commands = "".join(f"create refs/heads/{'x' * 200}-{n} {main}\n" for n in range(1000))
    git_cli("update-ref", "--stdin", cwd=source, stdin=commands)
    git_cli("pack-refs", "--all", cwd=source)
    limit = 1010 * 64 + 16 * 1024  # the refs at 64 bytes each, the object files (~3 KiB)
    export = export_repository(source, limit)
    assert export.ByteSize() <= limit + len(export.default_branch) + 16


def test_a_ref_name_that_is_not_utf8_exports_refs_only(tmp_path: Path) -> None:
    """git takes any bytes in a ref name; protobuf strings take UTF-8 only, so such a
    repository is fetched. (Counting the name's bytes against the limit raised
    UnicodeEncodeError: ExportRepository failed, and the replication with it.)"""
    source = source_repository(tmp_path)
    main = git_cli("rev-parse", "refs/heads/main", cwd=source).strip()
    refs = len(refs_of(source))
    (source / "refs" / "heads" / "caf\udce9").write_text(f"{main}\n")  # b"caf\xe9"
    export = export_repository(source, LIMIT)
    assert not export.copyable and export.ref_count == refs + 1


def test_a_cancelled_copy_ends_only_once_its_refs_are_mirrored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy cancelled (its replication timed out, its caller went away) while its
    thread moved files in and mirrored refs returned at once, the thread still running:
    the replication's lock was released, and a later replication's refs could be
    overwritten by this older export's."""
    source = source_repository(tmp_path)
    target = target_repository(tmp_path)
    export = export_repository(source, LIMIT)
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    mirror = replica_copy._mirror_refs

    def slow_mirror(repo: Path, desired: dict[str, str]) -> int:
        entered.set()
        release.wait(30)
        changed = mirror(repo, desired)
        finished.set()
        return changed

    monkeypatch.setattr(replica_copy, "_mirror_refs", slow_mirror)

    async def cancel_while_mirroring() -> None:
        task = asyncio.create_task(copy_into(target, export))
        await asyncio.to_thread(entered.wait, 30)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        assert not done, "the cancelled copy returned while its thread still mirrored refs"
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set()

    try:
        asyncio.run(cancel_while_mirroring())
    finally:
        release.set()
    assert refs_of(target) == refs_of(source)
    assert not quarantines_left(target)


def test_objects_the_target_already_has_are_freshened_against_a_concurrent_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy skips the files the replica already has. Unreachable there and older than
    gc's prune expiry (a branch deleted weeks ago, now restored on the source), they were
    left old: a gc --prune landing before the refs were mirrored removed them, and the
    new refs pointed at missing objects. git freshens an object it would write again."""
    source = source_repository(tmp_path)
    target = target_repository(tmp_path)
    export = export_repository(source, LIMIT)
    weeks_ago = time.time() - 21 * 86400
    for f in export.files:  # the replica holds every object already, unreachable and old
        path = target / "objects" / f.name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(f.data)
        os.utime(path, (weeks_ago, weeks_ago))
    mirror = replica_copy._mirror_refs

    def pruned_then_mirrored(repo: Path, desired: dict[str, str]) -> int:
        git_cli("-c", "gc.auto=0", "gc", "--quiet", "--prune=2.weeks.ago", cwd=repo)
        return mirror(repo, desired)

    monkeypatch.setattr(replica_copy, "_mirror_refs", pruned_then_mirrored)
    asyncio.run(copy_into(target, export))
    assert refs_of(target) == refs_of(source)
    git_cli("fsck", "--strict", "--no-dangling", cwd=target)


def test_a_new_replica_with_the_longest_name_is_copied(tmp_path: Path) -> None:
    """A path segment of MAX_SEGMENT_BYTES leaves room for one temporary sibling named
    after it - a new replica's - but the copy's quarantine was named after that one:
    past NAME_MAX, every copy into a new replica of such a name failed (and fetched)."""
    source = source_repository(tmp_path)
    temp = temp_sibling(tmp_path / ("x" * (MAX_SEGMENT_BYTES - 4) + ".git"), "replicate")
    init_bare_repository(temp, "refs/heads/main")
    asyncio.run(copy_into(temp, export_repository(source, LIMIT)))
    assert refs_of(temp) == refs_of(source)
    assert quarantines_left(temp) == [temp.name]


def test_a_source_with_more_distinct_tips_than_a_copy_takes_exports_refs_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target refuses a copy of more than MAX_TIPS distinct ref targets (git fsck's
    arguments); the source shipped all its object files anyway, for every replication."""
    source = source_repository(tmp_path)
    tips = len(set(refs_of(source).values()))
    monkeypatch.setattr(replica_copy, "MAX_TIPS", tips - 1)
    export = export_repository(source, LIMIT)
    assert not export.copyable and not export.files
    monkeypatch.setattr(replica_copy, "MAX_TIPS", tips)
    assert export_repository(source, LIMIT).copyable


def test_object_files_that_are_symbolic_links_are_not_exported(tmp_path: Path) -> None:
    """An export read whatever a symbolic link under objects/ pointed at, outside the
    repository too. git follows such links (an object store shared by hand): such a
    repository is fetched instead, git reading it as it would."""
    source = source_repository(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    loose = next(f.name for f in export_repository(source, LIMIT).files if not f.name.startswith("pack/"))
    (outside / "object").write_bytes((source / "objects" / loose).read_bytes())
    (source / "objects" / loose).unlink()
    (source / "objects" / loose).symlink_to(outside / "object")
    git_cli("fsck", "--no-dangling", cwd=source)  # git reads it
    export = export_repository(source, LIMIT)
    assert not export.copyable and not export.files

    (source / "objects" / loose).unlink()
    (source / "objects" / loose).write_bytes((outside / "object").read_bytes())
    pack = next(p for p in (source / "objects" / "pack").iterdir() if p.suffix == ".pack")
    (outside / pack.name).write_bytes(pack.read_bytes())
    pack.unlink()
    pack.symlink_to(outside / pack.name)
    git_cli("fsck", "--no-dangling", cwd=source)
    export = export_repository(source, LIMIT)
    assert not export.copyable and not export.files


# --- checks shared by the copies that reach them together (node.copy_check) -------------


def checks(how: str) -> float:
    return float(copy_check.CHECKS.labels(how)._value.get())


def counted() -> dict[str, float]:
    return {how: checks(how) for how in ("alone", "group", "copies")}


def pushed_repositories(tmp_path: Path, count: int) -> list[Path]:
    """`count` source repositories with a commit of their own and a blob they share
    (same content: the same object in each)."""
    sources = []
    for i in range(count):
        work = tmp_path / f"work-{i}"
        git_cli("init", "-q", "-b", "main", str(work), cwd=tmp_path)
        (work / "shared.txt").write_text("the same in every repository\n")
        (work / "own.txt").write_text(f"repository {i}\n")
        git_cli("add", ".", cwd=work)
        git_cli("commit", "-q", "-m", f"r{i}", cwd=work)
        source = tmp_path / f"source-{i}.git"
        init_bare_repository(source, "refs/heads/main")
        git_cli("push", "-q", str(source), "main", cwd=work)
        sources.append(source)
    return sources


def exported_pairs(tmp_path: Path, sources: list[Path]) -> list[tuple[Path, pb.ExportRepositoryResponse]]:
    pairs = []
    for i, source in enumerate(sources):
        target = tmp_path / f"target-{i}.git"
        init_bare_repository(target, "refs/heads/main")
        pairs.append((target, export_repository(source, LIMIT)))
    return pairs


@contextlib.asynccontextmanager
async def another_replication_on_its_way() -> AsyncIterator[asyncio.Event]:
    """A replication the checker counts as on its way to its check until the event
    yielded is set (or the block ends); it then ends without a check."""
    on_its_way, release = asyncio.Event(), asyncio.Event()

    async def other() -> None:
        with copy_check.checker().expected():
            on_its_way.set()
            await release.wait()

    task = asyncio.create_task(other())
    await on_its_way.wait()
    try:
        yield release
    finally:
        release.set()
        await task


async def until_waiting_at_their_check(count: int) -> None:
    """Bounded: until `count` copies wait at their check."""
    for _ in range(200):
        if len(copy_check.checker()._waiting) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(copy_check.checker()._waiting)} copies wait at their check, not {count}")


async def expected_copy(target: Path, export: pb.ExportRepositoryResponse) -> None:
    """A copy as a replication makes it: expected by the checker from its start."""
    with copy_check.checker().expected():
        await copy_into(target, export)


async def copy_all(pairs: list[tuple[Path, pb.ExportRepositoryResponse]]) -> list[BaseException | None]:
    results = await asyncio.gather(*(expected_copy(t, e) for t, e in pairs), return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]


def test_copies_that_start_together_share_one_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A long linger: the first copy at its check waits for the five others on their way.
    monkeypatch.setattr(copy_check, "LINGER", 60.0)
    sources = pushed_repositories(tmp_path, 6)
    pairs = exported_pairs(tmp_path, sources)
    before = counted()
    assert asyncio.run(asyncio.wait_for(copy_all(pairs), 30)) == [None] * 6
    after = counted()
    assert {how: after[how] - before[how] for how in after} == {"alone": 0, "group": 1, "copies": 6}
    for (target, _), source in zip(pairs, sources, strict=True):
        assert refs_of(target) == refs_of(source)
        git_cli("fsck", "--strict", "--no-dangling", cwd=target)


def test_a_check_with_nobody_on_the_way_does_not_linger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copy_check, "LINGER", 60.0)
    (source,) = pushed_repositories(tmp_path, 1)
    ((target, export),) = exported_pairs(tmp_path, [source])
    before = counted()
    asyncio.run(asyncio.wait_for(copy_all([(target, export)]), 30))  # 60 s if it waited
    assert checks("alone") - before["alone"] == 1
    assert refs_of(target) == refs_of(source)


def test_a_replication_that_ends_without_a_check_releases_the_waiting_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One copy waits at its check for another replication, which then ends without a
    # check (as a fetch or a failed export would): the first goes on, alone.
    monkeypatch.setattr(copy_check, "LINGER", 60.0)
    (source,) = pushed_repositories(tmp_path, 1)
    ((target, export),) = exported_pairs(tmp_path, [source])

    async def run() -> None:
        async with another_replication_on_its_way() as release:
            copying = asyncio.create_task(expected_copy(target, export))
            await until_waiting_at_their_check(1)
            assert not copying.done()
            release.set()
            await asyncio.wait_for(copying, 30)

    before = counted()
    asyncio.run(run())
    assert checks("alone") - before["alone"] == 1
    assert refs_of(target) == refs_of(source)


def test_a_group_refuses_only_its_faulty_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In one group: a member with a `.git` tree entry (policy), and a member whose copy
    lacks the blob every member shares - present in the others' quarantines, so the
    group's fsck alone would pass it. Both are refused; the others are copied."""
    monkeypatch.setattr(copy_check, "LINGER", 60.0)
    sources = pushed_repositories(tmp_path, 5)
    evil = sources[1]
    blob = git_cli("hash-object", "-w", "--stdin", cwd=evil, stdin="x\n").strip()
    tree = git_cli("mktree", cwd=evil, stdin=f"100644 blob {blob}\t.git\n").strip()
    commit = git_cli("commit-tree", tree, "-m", "dotgit", cwd=evil).strip()
    git_cli("update-ref", "refs/heads/main", commit, cwd=evil)
    pairs = exported_pairs(tmp_path, sources)
    shared = git_cli("rev-parse", "main:shared.txt", cwd=sources[2]).strip()
    lacking = pairs[2][1]
    lacking.files.remove(next(f for f in lacking.files if f.name == f"{shared[:2]}/{shared[2:]}"))
    before = counted()
    errors = asyncio.run(asyncio.wait_for(copy_all(pairs), 30))
    assert checks("group") - before["group"] == 1  # then each alone
    assert isinstance(errors[1], CopyRefused) and "hasDotgit" in str(errors[1])
    assert isinstance(errors[2], CopyRefused) and "missing" in str(errors[2])
    assert [e is None for e in errors] == [True, False, False, True, True]
    for i, (target, _) in enumerate(pairs):
        assert (refs_of(target) == refs_of(sources[i])) == (i not in (1, 2))
        assert not quarantines_left(target)


def test_a_group_check_walks_each_members_own_objects(tmp_path: Path) -> None:
    """The group path itself (copy_check._check_group): the group's git fsck passes -
    the shared blob the second member lacks is in the others' quarantines - and the
    walk of that member's own objects refuses it."""
    sources = pushed_repositories(tmp_path, 3)
    items = []
    shared = ""
    for i, source in enumerate(sources):
        target = tmp_path / f"target-{i}.git"
        init_bare_repository(target, "refs/heads/main")
        export = export_repository(source, LIMIT)
        if i == 1:
            shared = git_cli("rev-parse", "main:shared.txt", cwd=source).strip()
            export.files.remove(next(f for f in export.files if f.name == f"{shared[:2]}/{shared[2:]}"))
        quarantine = tmp_path / f"quarantine-{i}"
        replica_copy._write_quarantine(target / "objects", quarantine, export.files)
        tips = sorted({r.oid for r in export.refs})
        items.append((target, quarantine, tips, replica_copy._object_count(export.files)))

    async def run() -> list[BaseException | None]:
        loop = asyncio.get_running_loop()
        group = [copy_check._Check(t, q, tips, n, loop.create_future()) for t, q, tips, n in items]
        await copy_check._check_group(group)
        return [item.future.exception() for item in group]

    before = counted()
    errors = asyncio.run(run())
    assert (checks("group") - before["group"], checks("alone") - before["alone"]) == (1, 0)
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], copy_check.CheckFailed) and f"{shared}: object missing" in str(errors[1])


def test_a_copy_cancelled_while_its_group_waits_leaves_the_others_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two copies wait at their check for a third replication still on its way; one is
    # cancelled (its quarantine removed) before the group leaves. The other is copied
    # all the same, and the cancelled one leaves nothing behind.
    monkeypatch.setattr(copy_check, "LINGER", 60.0)
    sources = pushed_repositories(tmp_path, 2)
    pairs = exported_pairs(tmp_path, sources)

    async def run() -> None:
        async with another_replication_on_its_way() as release:
            copies = [asyncio.create_task(expected_copy(t, e)) for t, e in pairs]
            await until_waiting_at_their_check(2)
            copies[0].cancel()
            with pytest.raises(asyncio.CancelledError):
                await copies[0]
            release.set()
            await asyncio.wait_for(copies[1], 30)

    before = counted()
    asyncio.run(run())
    # the group's fsck failed on the vanished quarantine; each member then alone
    assert (checks("group") - before["group"], checks("alone") - before["alone"]) == (1, 2)
    (first, _), (second, _) = pairs
    assert refs_of(second) == refs_of(sources[1])
    assert refs_of(first) == {}
    assert not quarantines_left(first) and not quarantines_left(second)


# --- directories from the stash (node.dir_stash) ---------------------------------------


def stashed(tmp_path: Path, count: int) -> tuple[DirectoryStash, set[int]]:
    """A stash holding `count` directories, and their inode numbers."""
    stash = DirectoryStash(tmp_path / "stash")
    inodes = set()
    for n in range(count):
        spare = tmp_path / f"spare-{n}"
        spare.mkdir()
        inodes.add(spare.stat().st_ino)
        stash.retire(spare)
    return stash, inodes


def directory_inodes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_ino for p in root.rglob("*") if p.is_dir()}


def stash_inodes(stash: DirectoryStash) -> set[int]:
    entries = list(stash.root.iterdir())
    assert len(entries) == len(stash) and all(not any(e.iterdir()) for e in entries)
    return {e.stat().st_ino for e in entries}


def test_copies_take_their_directories_from_the_stash_and_give_them_back(tmp_path: Path) -> None:
    """No directory is made or removed: the quarantine and its fan-out directories come
    from the stash; a fan-out directory the replica lacks is moved in whole, the others
    go back to the stash once their files are moved in."""
    sources = pushed_repositories(tmp_path, 2)
    (first, first_export), (second, second_export) = exported_pairs(tmp_path, sources)
    for n in range(256):  # `second` has every fan-out directory: its files move one by one
        (second / "objects" / f"{n:02x}").mkdir()
    stash, spare = stashed(tmp_path, 16)
    before = {target: directory_inodes(target) for target in (first, second)}
    for target, export in ((first, first_export), (second, second_export)):
        asyncio.run(copy_into(target, export, stash))
        assert refs_of(target) == {r.name: r.oid for r in export.refs}
        git_cli("fsck", "--strict", "--no-dangling", cwd=target)
        assert not quarantines_left(target)
    moved_in = {name: inode for name, inode in directory_inodes(first).items() if name not in before[first]}
    assert moved_in and all(name.startswith("objects/") for name in moved_in)
    assert directory_inodes(second) == before[second]
    in_stash = stash_inodes(stash)
    assert in_stash.isdisjoint(moved_in.values())
    assert in_stash | set(moved_in.values()) == spare


def test_a_refused_copy_leaves_the_stash_sound(tmp_path: Path) -> None:
    source = source_repository(tmp_path)
    export = export_repository(source, LIMIT)
    blob = git_cli("rev-parse", "side:side.txt", cwd=source).strip()
    export.files.remove(next(f for f in export.files if f.name == f"{blob[:2]}/{blob[2:]}"))
    target = target_repository(tmp_path)
    stash, spare = stashed(tmp_path, 16)
    with pytest.raises(CopyRefused, match="fail git fsck"):
        asyncio.run(copy_into(target, export, stash))
    assert not quarantines_left(target) and not (target / "refs" / "heads" / "side").exists()
    assert stash_inodes(stash) < spare  # the quarantine's directories were removed with it
    asyncio.run(copy_into(target, export_repository(source, LIMIT), stash))
    assert refs_of(target) == refs_of(source)
