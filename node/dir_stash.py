"""Empty directories kept for reuse, so that a replication neither creates nor removes
directory inodes on its way.

Why: on an ext4 file system without a journal (our machines, and CI), allocating an
inode skips every free inode of its group that was freed less than a minute or five ago
(the kernel's `recently_deleted`), reading each one's inode-table block to learn it. A
copy made ~7 directories and removed 4 (its quarantine and the quarantine's fan-out
directories), so during a backlog drain every new inode walked past thousands of
recently freed ones: `perf record -a` put 14.6 % of the whole machine's CPU in
`__ext4_new_inode` (11 % under `mkdir`), about 3.8 ms of CPU a replication. An emptied
directory renamed into the stash, and renamed out again where the next directory is
needed, is neither freed nor allocated.

A stash is a directory (`root`, named with TEMP_MARKER: a starting node's janitor
removes it with its content, and listings skip it) on the storage's file system, whose
entries are empty directories named `d<N>`. `make` and `retire` stand for `os.mkdir` and
`os.rmdir`, with the same outcome for the caller; they may run in several threads at
once. A stash holds at most `capacity` directories: past it, `retire` removes.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import threading
from pathlib import Path

from common.paths import TEMP_MARKER

# Directories a stash keeps at most (a copy retires ~4 and takes them back at once).
CAPACITY = 1024
STASH_NAME = f"{TEMP_MARKER}stash"


class DirectoryStash:
    """Empty directories under `root` for reuse (see module doc)."""

    def __init__(self, root: Path, capacity: int = CAPACITY) -> None:
        self.root = root
        self.capacity = capacity
        self._free: list[str] = []
        self._names = itertools.count()
        self._lock = threading.Lock()
        self._root_made = False

    def __len__(self) -> int:
        return len(self._free)

    def make(self, path: Path) -> None:
        """Create the empty directory `path` as `os.mkdir` would (FileExistsError when
        something is there, FileNotFoundError without its parent), from the stash when
        it holds one."""
        with self._lock:
            name = self._free.pop() if self._free else None
        if name is not None:
            if os.path.lexists(path):  # rename would replace an empty directory
                self._give_back(name)
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
            try:
                os.rename(self.root / name, path)
                return
            except FileNotFoundError:
                if not (self.root / name).is_dir():  # the stash entry went (a sweep)
                    self._root_made = False
                else:
                    self._give_back(name)
                    raise  # no parent: as mkdir
            except OSError:
                self._give_back(name)  # e.g. another file system: mkdir instead
        os.mkdir(path)

    def retire(self, path: Path) -> None:
        """Remove the empty directory `path` as `os.rmdir` would (OSError when it is not
        empty), into the stash while it has room."""
        with self._lock:
            name = f"d{next(self._names)}" if len(self._free) < self.capacity else None
        if name is not None and _empty(path):
            with contextlib.suppress(OSError):
                self._make_root()
                os.rename(path, self.root / name)
                self._give_back(name)
                return
        os.rmdir(path)

    def _give_back(self, name: str) -> None:
        with self._lock:
            self._free.append(name)

    def _make_root(self) -> None:
        if not self._root_made:
            self.root.mkdir(exist_ok=True)
            self._root_made = True


def _empty(path: Path) -> bool:
    """Whether the directory `path` has no entry (False when it cannot be read)."""
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def mkdir(stash: DirectoryStash | None, path: Path) -> None:
    """`stash.make(path)`, or `os.mkdir(path)` without a stash."""
    if stash is None:
        os.mkdir(path)
    else:
        stash.make(path)


def rmdir(stash: DirectoryStash | None, path: Path) -> None:
    """`stash.retire(path)`, or `os.rmdir(path)` without a stash."""
    if stash is None:
        os.rmdir(path)
    else:
        stash.retire(path)
