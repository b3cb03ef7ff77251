"""node.dir_stash: empty directories reused, with mkdir's and rmdir's outcomes."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from node.dir_stash import DirectoryStash


def stash_in(tmp_path: Path, capacity: int = 8) -> DirectoryStash:
    return DirectoryStash(tmp_path / "stash", capacity)


def test_a_retired_directory_is_made_again_without_a_new_inode(tmp_path: Path) -> None:
    stash = stash_in(tmp_path)
    first = tmp_path / "a"
    stash.make(first)  # an empty stash: mkdir
    assert first.is_dir() and len(stash) == 0
    inode = first.stat().st_ino
    stash.retire(first)
    assert not first.exists() and len(stash) == 1
    second = tmp_path / "b"
    stash.make(second)
    assert second.is_dir() and not any(second.iterdir())
    assert second.stat().st_ino == inode  # the same directory, renamed
    assert len(stash) == 0


def test_make_fails_as_mkdir_and_keeps_the_stash(tmp_path: Path) -> None:
    stash = stash_in(tmp_path)
    spare = tmp_path / "spare"
    stash.make(spare)
    stash.retire(spare)
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    for taken in ("empty", "file"):  # an empty directory there is not replaced
        with pytest.raises(FileExistsError):
            stash.make(tmp_path / taken)
    with pytest.raises(FileNotFoundError):
        stash.make(tmp_path / "no-parent" / "d")
    assert len(stash) == 1
    assert (tmp_path / "file").read_text() == "x"


def test_retire_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    stash = stash_in(tmp_path)
    full = tmp_path / "full"
    full.mkdir()
    (full / "object").write_text("kept")
    with pytest.raises(OSError):
        stash.retire(full)
    assert (full / "object").read_text() == "kept"
    assert len(stash) == 0


def test_past_its_capacity_retire_removes(tmp_path: Path) -> None:
    stash = stash_in(tmp_path, capacity=2)
    paths = [tmp_path / f"d{n}" for n in range(3)]
    for path in paths:
        path.mkdir()
    for path in paths:
        stash.retire(path)
    assert not any(path.exists() for path in paths)
    assert len(stash) == 2 and len(list((tmp_path / "stash").iterdir())) == 2


def test_a_stash_removed_on_disk_falls_back_to_mkdir(tmp_path: Path) -> None:
    """A starting node's janitor removes the stash's directory with its content."""
    stash = stash_in(tmp_path)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        stash.retire(tmp_path / name)
    shutil.rmtree(tmp_path / "stash")
    stash.make(tmp_path / "c")
    stash.make(tmp_path / "d")
    assert (tmp_path / "c").is_dir() and (tmp_path / "d").is_dir()
    stash.retire(tmp_path / "c")  # the stash's directory is made again
    assert len(stash) == 1 and not (tmp_path / "c").exists()


def test_threads_making_and_retiring_at_once_never_share_a_directory(tmp_path: Path) -> None:
    stash = stash_in(tmp_path, capacity=64)
    errors: list[BaseException] = []
    held: dict[int, int] = {}  # inode -> thread holding that directory
    lock = threading.Lock()
    start = threading.Barrier(6)

    def worker(n: int) -> None:
        try:
            start.wait()
            for round_ in range(100):
                path = tmp_path / f"w{n}-{round_}"
                stash.make(path)
                inode = path.stat().st_ino
                with lock:
                    assert inode not in held, f"thread {n} got thread {held.get(inode)}'s directory"
                    held[inode] = n
                assert os.listdir(path) == []
                with lock:
                    del held[inode]
                stash.retire(path)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert not [p for p in tmp_path.iterdir() if p.name != "stash"]
    assert 1 <= len(stash) <= 6
    assert sorted(os.listdir(tmp_path / "stash")) == sorted(stash._free)
