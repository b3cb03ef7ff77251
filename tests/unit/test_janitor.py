"""node.janitor on real directories: only git's temporary names go, and only when old
enough or (quarantines) when no receive-pack runs in the repository any more."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from common.config import ConfigError
from node import janitor
from node.config import NodeConfig
from node.janitor import WriterCounts, repositories_under, sweep_repository, sweep_storage
from node.storage import TEMP_MARKER, init_bare_repository

HOUR = 3600.0


def repository(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    init_bare_repository(path, "refs/heads/main")
    objects = path / "objects"
    (objects / "pack").mkdir(exist_ok=True)
    (objects / "pack" / "pack-1.pack").write_bytes(b"PACK kept")
    (objects / "pack" / "pack-1.idx").write_bytes(b"idx kept")
    (objects / "ab").mkdir()
    (objects / "ab" / ("c" * 38)).write_bytes(b"loose object kept")
    (path / "refs" / "heads" / "main").write_text("0" * 40 + "\n")
    return path


def quarantine(repo: Path, name: str, age: float = 0.0) -> Path:
    """A receive-pack quarantine with a half-written pack, its files `age` seconds old."""
    directory = repo / "objects" / f"tmp_objdir-incoming-{name}"
    (directory / "pack").mkdir(parents=True)
    pack = directory / "pack" / "tmp_pack_x"
    pack.write_bytes(b"P" * 1000)
    aged(pack, directory / "pack", directory, age=age)
    return directory


def aged(*paths: Path, age: float) -> None:
    stamp = time.time() - age
    for path in paths:
        os.utime(path, (stamp, stamp))


def kept(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()}


def test_everything_temporary_goes_and_nothing_else(tmp_path: Path) -> None:
    repo = repository(tmp_path / "a.git")
    before = kept(repo)
    quarantine(repo, "AAAAAA")
    (repo / "objects" / "incoming-BBBBBB").mkdir()  # older git's quarantine name
    for name in ("tmp_pack_1", "tmp_idx_1", "tmp_rev_1"):
        (repo / "objects" / "pack" / name).write_bytes(b"x")
    (repo / "objects" / "ab" / "tmp_obj_1").write_bytes(b"x")
    (repo / "refs" / "heads" / "feature").mkdir()
    for lock in ("refs/heads/main.lock", "refs/heads/feature/x.lock", "packed-refs.lock", "HEAD.lock"):
        (repo / lock).write_text("0" * 40 + "\n")  # what a git killed mid-update leaves
    removed = sweep_repository(repo, 0.0)
    assert len(removed) == 10
    assert kept(repo) == before
    assert sweep_repository(repo, 0.0) == []


def test_only_what_is_older_than_max_age_goes_judged_by_its_newest_file(tmp_path: Path) -> None:
    repo = repository(tmp_path / "a.git")
    old = quarantine(repo, "OLD000", age=2 * HOUR)
    writing = quarantine(repo, "BUSY00", age=2 * HOUR)
    (writing / "pack" / "tmp_pack_x").write_bytes(b"P" * 2000)  # still being written
    aged(writing / "pack", writing, age=2 * HOUR)  # its directories look old
    stale_pack = repo / "objects" / "pack" / "tmp_pack_old"
    stale_pack.write_bytes(b"x")
    aged(stale_pack, age=2 * HOUR)
    fresh_pack = repo / "objects" / "pack" / "tmp_pack_new"
    fresh_pack.write_bytes(b"x")
    stale_lock = repo / "refs" / "heads" / "main.lock"
    stale_lock.write_text("x")
    aged(stale_lock, age=2 * HOUR)
    held_lock = repo / "packed-refs.lock"  # a running pack-refs holds it
    held_lock.write_text("x")
    assert sorted(sweep_repository(repo, HOUR)) == sorted([old, stale_pack, stale_lock])
    assert writing.exists() and fresh_pack.exists() and held_lock.exists()


def test_the_storage_sweep_reaches_nested_repositories_and_skips_the_nodes_temporaries(
    tmp_path: Path,
) -> None:
    nested = repository(tmp_path / "group" / "sub" / "b.git")
    top = repository(tmp_path / "a.git")
    in_progress = repository(tmp_path / f"c.git{TEMP_MARKER}1")  # a create still running
    for repo in (nested, top, in_progress):
        quarantine(repo, "AAAAAA", age=2 * HOUR)
    assert sorted(repositories_under(tmp_path)) == sorted([nested, top])
    assert len(sweep_storage(tmp_path, HOUR)) == 2
    assert list((in_progress / "objects").glob("tmp_objdir-*"))


async def test_quarantines_go_when_the_last_receive_pack_in_the_repository_ends(tmp_path: Path) -> None:
    repo = repository(tmp_path / "a.git")
    other = repository(tmp_path / "b.git")
    writers = WriterCounts()
    first_done, second_done = asyncio.Event(), asyncio.Event()

    async def push(path: Path, name: str, done: asyncio.Event) -> None:
        async with writers.writing(path):
            quarantine(path, name)
            await done.wait()

    first = asyncio.create_task(push(repo, "FIRST0", first_done))
    second = asyncio.create_task(push(repo, "SECOND", second_done))
    elsewhere = asyncio.create_task(push(other, "OTHER0", asyncio.Event()))
    await asyncio.sleep(0)  # each push runs up to its wait
    assert (writers.running(repo), writers.running(other)) == (2, 1)
    (repo / "objects" / "pack" / "tmp_pack_repack").write_bytes(b"x")  # not a quarantine
    (repo / "refs" / "heads" / "main.lock").write_text("x")  # nor a lock
    first_done.set()
    await first
    assert len(list((repo / "objects").glob("tmp_objdir-incoming-*"))) == 2  # the second still runs
    second_done.set()
    await second
    assert not list((repo / "objects").glob("tmp_objdir-incoming-*"))
    assert (repo / "objects" / "pack" / "tmp_pack_repack").exists()
    assert (repo / "refs" / "heads" / "main.lock").exists()
    assert list((other / "objects").glob("tmp_objdir-incoming-*"))  # its push still runs
    elsewhere.cancel()
    with pytest.raises(asyncio.CancelledError):
        await elsewhere
    assert not list((other / "objects").glob("tmp_objdir-incoming-*"))  # a cut-off push too


@pytest.mark.parametrize(
    "settings",
    [{"temporaries_max_age": 59.0}, {"temporaries_max_age": 0.0}, {"temporaries_sweep_interval": -1.0}],
)
def test_settings_that_would_remove_running_writes_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        NodeConfig(token="t", **settings)  # type: ignore[arg-type]


async def test_a_push_starting_while_the_quarantines_are_removed_keeps_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list is taken when the last push ends; a push that starts while the removal
    runs in its thread makes a quarantine of a new name, which is not on it."""
    repo = repository(tmp_path / "a.git")
    writers = WriterCounts()
    started_meanwhile: list[Path] = []
    real_remove = janitor.remove

    def remove_while_a_push_starts(found: list[tuple[Path, str]], max_age: float) -> list[Path]:
        started_meanwhile.append(quarantine(repo, "NEWONE"))
        return real_remove(found, max_age)

    monkeypatch.setattr(janitor, "remove", remove_while_a_push_starts)
    async with writers.writing(repo):
        cut_off = quarantine(repo, "CUTOFF")
    assert not cut_off.exists()
    assert started_meanwhile and started_meanwhile[0].exists()


async def test_a_push_starting_as_the_last_one_ends_keeps_its_own(tmp_path: Path) -> None:
    """A push that gets its turn on the event loop right after the last push ended (and
    before anything else ran) is counted and its quarantine kept: the list of what to
    remove was taken when the last one ended, not one loop step later."""
    repo = repository(tmp_path / "a.git")
    writers = WriterCounts()
    end_first, end_second = asyncio.Event(), asyncio.Event()
    second_quarantine: list[Path] = []

    async def first() -> None:
        async with writers.writing(repo):
            quarantine(repo, "CUTOFF")
            await end_first.wait()

    async def second() -> None:
        async with writers.writing(repo):
            second_quarantine.append(quarantine(repo, "SECOND"))  # as its git makes it
            await end_second.wait()

    one = asyncio.create_task(first())
    await asyncio.sleep(0)
    end_first.set()  # the first push's end and the second's start are ready together
    two = asyncio.create_task(second())
    await one
    assert writers.running(repo) == 1
    assert second_quarantine[0].exists(), "the quarantine of a running push was removed"
    assert not list((repo / "objects").glob("tmp_objdir-incoming-CUTOFF"))
    end_second.set()
    await two


def test_loose_object_directories_are_swept_first_after_start_then_once_a_day() -> None:
    assert janitor.loose_due(None, 5.0)  # the first scheduled sweep: a crash's leftovers
    assert not janitor.loose_due(100.0, 100.0 + 900.0)
    assert not janitor.loose_due(100.0, 100.0 + janitor.LOOSE_SWEEP_INTERVAL - 1)
    assert janitor.loose_due(100.0, 100.0 + janitor.LOOSE_SWEEP_INTERVAL)


def test_a_lock_is_stale_after_stale_lock_age_whatever_the_max_age(tmp_path: Path) -> None:
    repo = repository(tmp_path / "a.git")
    stale = repo / "refs" / "heads" / "main.lock"
    stale.write_text("x")
    aged(stale, age=janitor.STALE_LOCK_AGE + 10)
    held = repo / "refs" / "heads" / "other.lock"
    held.write_text("x")
    aged(held, age=janitor.STALE_LOCK_AGE - 60)
    old_pack = repo / "objects" / "pack" / "tmp_pack_x"
    old_pack.write_bytes(b"x")
    aged(old_pack, age=janitor.STALE_LOCK_AGE + 10)  # other temporaries keep max_age
    assert sweep_repository(repo, 24 * HOUR) == [stale]
    assert held.exists() and old_pack.exists()
