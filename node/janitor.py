"""What git leaves inside a repository when it is cut off, and its removal.

git writes incoming objects to temporary names and renames them into place at the end;
a process killed on the way leaves them behind, and nothing else ever removes them:

- `objects/tmp_objdir-incoming-XXXXXX/` (also `incoming-XXXXXX` from older git): the
  quarantine of a `git receive-pack`. git removes it after a push it finished or
  refused, not when it is killed - and the node kills it whenever its client goes away
  (node.pipes). A client retrying a cut-off push of a large repository left a copy of
  its pack each time, until the disk was full.
- `objects/pack/tmp_pack_*`, `tmp_idx_*`, `tmp_rev_*`: a killed `index-pack`,
  `pack-objects` or `repack` (a replication fetch or an optimization cut off).
- `objects/XX/tmp_obj_*`: a killed loose-object write.
- `*.lock` files (`refs/heads/main.lock`, `packed-refs.lock`, `HEAD.lock`,
  `config.lock`): a git killed while it updated a ref or a file. git never takes a
  lock that exists, so one left behind refuses every later push to that ref ("cannot
  lock ref ... File exists") and every replication into the replica, for ever.

Three moments remove them (locks only at start and by age: git holds one for
milliseconds, a repack's packed-refs.lock for seconds):
- `WriterCounts.writing(path)` wraps each receive-pack: when the last one running in a
  repository ends, that repository's quarantine directories are removed at once (only
  receive-pack makes them; the ones of pushes still running are not touched).
- At start (`sweep_at_start`, before any RPC runs, in the same walk as the node's own
  crash leftovers): all but the
  loose-object temporaries, whose 256 directories per repository would delay the
  node's serving by minutes at 100,000 repositories; the schedule removes those.
- Periodically (`sweep_storage(root, max_age, busy)`): anything temporary whose newest
  modification is older than `max_age` seconds - what a running writer is still
  writing is newer than that - in the repositories where no receive-pack or
  replication fetch or optimization runs (`busy`: WriterCounts.running,
  node.replication.replicating, RepositoryServicer.optimizing).
  A writer's temporary stays as old as its last write while its client is slow to send
  the rest, or while git resolves deltas and checks connectivity; removing it failed
  that push ("unpack-objects abnormal exit"), replication ("fetch-pack: invalid
  index-pack output") or optimization ("failed to run repack").

Only entries with git's own temporary names are removed, never one that is or holds
a repository (repository paths may nest); a repository's refs, packs and loose objects
are never touched. What the node may not remove (another owner's file, an immutable
directory) is logged and left; a node that stops ends its sweep before the next
repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from prometheus_client import Counter as MetricCounter

from node.storage import TEMP_MARKER, is_bare_repository

log = logging.getLogger(__name__)

QUARANTINE_PREFIXES = ("tmp_objdir-incoming-", "incoming-")
PACK_TEMP_PREFIXES = ("tmp_pack_", "tmp_idx_", "tmp_rev_")
LOOSE_TEMP_PREFIX = "tmp_obj_"
LOCK_SUFFIX = ".lock"

REMOVED = MetricCounter(
    "gitraft_node_temporaries_removed",
    "Temporary objects and lock files git left in repositories when cut off (kind: quarantine, "
    "pack, loose, lock), removed.",
    ["kind"],
)
REMOVED_BYTES = MetricCounter(
    "gitraft_node_temporaries_removed_bytes",
    "Bytes of the temporaries removed (gitraft_node_temporaries_removed_total).",
)


def sweep_repository(path: Path, max_age: float, loose: bool = True) -> list[Path]:
    """Blocking: remove the temporaries in the bare repository at `path` whose newest
    modification is at least `max_age` seconds old (0: all of them), loose-object
    temporaries only with `loose` (up to 256
    directory reads, most of a sweep's cost). Returns what was removed (a missing
    repository or entry is no error: it may be removed meanwhile)."""
    objects = path / "objects"
    found = quarantines(path)
    found += [
        (objects / "pack" / name, "pack")
        for name in _names(objects / "pack")
        if name.startswith(PACK_TEMP_PREFIXES)
    ]
    for fanout in _names(objects) if loose else []:
        if len(fanout) == 2:  # no stat first: _names of a file is []
            found += [
                (objects / fanout / name, "loose")
                for name in _names(objects / fanout)
                if name.startswith(LOOSE_TEMP_PREFIX)
            ]
    found += [(lock, "lock") for lock in _lock_files(path)]
    return remove(found, max_age)


def quarantines(path: Path) -> list[tuple[Path, str]]:
    """The receive-pack quarantine directories in the repository at `path`, as
    (path, kind) for `remove` (one listing of objects/)."""
    objects = path / "objects"
    return [
        (objects / name, "quarantine") for name in _names(objects) if name.startswith(QUARANTINE_PREFIXES)
    ]


def remove(found: list[tuple[Path, str]], max_age: float) -> list[Path]:
    """Blocking: remove each (path, kind) of `found` whose newest modification is at
    least `max_age` seconds old (0: each) - a lock file once STALE_LOCK_AGE old, if
    that is sooner; returns the paths removed."""
    now = time.time()
    removed: list[Path] = []
    for entry, kind in found:
        size, newest, holds_repository = _survey(entry)
        age = min(max_age, STALE_LOCK_AGE) if kind == "lock" else max_age
        if age > 0 and newest > now - age:
            continue
        if holds_repository:  # repository paths may nest: a name alone proves nothing
            log.warning("a repository has a temporary's name; kept", extra={"path": str(entry)})
            continue
        if not _removed(entry):
            continue
        REMOVED.labels(kind).inc()
        REMOVED_BYTES.inc(size)
        removed.append(entry)
    return removed


# A lock file this old is stale whatever temporaries_max_age says: git holds a ref lock
# for the milliseconds of an update (a pack-refs of many refs: seconds), and a stale one
# refuses every later update of its ref - a push to that branch failed until a sweep
# removed it (a receive-pack the node killed as it updated refs: its client went away).
STALE_LOCK_AGE = 300.0

# Loose-object directories are read by a scheduled sweep at most once a day (and by the
# first one after start): a repository has up to 256 of them, ten times the cost of the
# rest of a sweep (2.0 against 0.2 s of CPU for 2,000 repositories of 100 directories,
# ~100 s a sweep at 100,000), for `tmp_obj_*` files of one object each that `git prune`
# (OptimizeRepository) also removes.
LOOSE_SWEEP_INTERVAL = 86400.0


def loose_due(last_loose: float | None, now: float) -> bool:
    """Whether a scheduled sweep at monotonic time `now` reads loose-object directories,
    the last one that did having run at `last_loose` (None: none since start)."""
    return last_loose is None or now - last_loose >= LOOSE_SWEEP_INTERVAL


def sweep_storage(
    root: Path,
    max_age: float,
    busy: Callable[[Path], bool] = lambda _: False,
    loose: bool = True,
    stop: threading.Event | None = None,
    leftover: Callable[[Path], None] = lambda _: None,
) -> list[Path]:
    """Blocking: `sweep_repository(_, max_age, loose=loose)` for every bare repository
    under `root` but those where `busy(path)` (a node-run git writes in it; asked just
    before the repository is listed: a writer starting later makes temporaries newer
    than any `max_age`). Ends before the next repository once `stop` is set (the node
    stops: a process waits for its threads when it exits). The node's own temporary
    directories met on the way go to `leftover` (repositories_under)."""
    removed: list[Path] = []
    for repository in repositories_under(root, leftover):
        if stop is not None and stop.is_set():
            break
        if busy(repository):
            continue
        try:
            removed += sweep_repository(repository, max_age, loose=loose)
        except OSError as exc:  # one repository the node cannot read stops no other
            log.warning("could not sweep a repository", extra={"path": str(repository), "error": str(exc)})
    return removed


def sweep_at_start(root: Path, stop: threading.Event | None = None) -> list[Path]:
    """Blocking, while no RPC runs (the node starts): in one walk of `root`, remove the
    node's own leftovers of a crashed create, remove or replication (directories named
    with TEMP_MARKER, outside repositories) and every repository's temporaries but the
    loose ones (see the module doc). Returns what was removed."""
    leftovers: list[Path] = []

    def remove_leftover(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        leftovers.append(path)

    removed = sweep_storage(root, 0.0, loose=False, stop=stop, leftover=remove_leftover)
    return leftovers + removed


def repositories_under(root: Path, leftover: Callable[[Path], None] = lambda _: None) -> Iterator[Path]:
    """The bare repositories under `root` (not descending into one); the node's own
    temporary directories (TEMP_MARKER) are not descended into but given to `leftover`."""
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                directories = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for path in directories:
            if TEMP_MARKER in path.name:
                leftover(path)
                continue
            try:
                bare = is_bare_repository(path)
            except OSError:  # unreadable: neither swept nor descended into
                continue
            if bare:
                yield path
            else:
                stack.append(path)


class Activity:
    """How many writers of one kind (e.g. `git gc`) run in each repository; changed on
    the event loop only, `running` also read from the sweep's thread."""

    def __init__(self) -> None:
        self._running: Counter[Path] = Counter()

    @contextlib.contextmanager
    def writing(self, path: Path) -> Iterator[None]:
        """Count one writer in `path` while the block runs."""
        self._running[path] += 1
        try:
            yield
        finally:
            self._running[path] -= 1
            if not self._running[path]:
                del self._running[path]

    def running(self, path: Path) -> int:
        """How many such writers run in `path` (one dict lookup, which inserts nothing)."""
        return self._running.get(path, 0)


class WriterCounts:
    """How many receive-packs run in each repository of this node (an Activity), and
    the removal of a repository's quarantines when the last one there ends."""

    def __init__(self) -> None:
        self._pushes = Activity()

    @contextlib.asynccontextmanager
    async def writing(self, path: Path) -> AsyncIterator[None]:
        """Count one receive-pack in `path`; when the last one there ends (however it
        ends), remove the repository's quarantine directories."""
        try:
            with self._pushes.writing(path):
                yield
        finally:
            if not self._pushes.running(path):
                try:  # listed now, before any other task runs: none runs in `path`
                    found = quarantines(path)
                except OSError as exc:  # the sweep never fails the push it follows
                    log.warning("could not list quarantines", extra={"path": str(path), "error": str(exc)})
                    found = []
                if found:
                    await asyncio.shield(self._remove_quarantines(path, found))

    async def _remove_quarantines(self, path: Path, found: list[tuple[Path, str]]) -> None:
        """Remove in a thread the quarantines `found` in `path` when no receive-pack ran
        there. A push starting meanwhile makes a quarantine of a new random name, which is
        not on the list. (A task of its own, a shield's: its first step runs only after
        other ready tasks, so it must not list.)"""
        try:
            removed = await asyncio.to_thread(remove, found, 0.0)
        except OSError as exc:  # the sweep never fails the push it follows
            log.warning("could not remove quarantines", extra={"path": str(path), "error": str(exc)})
            return
        if removed:
            log.info(
                "removed the quarantine of a receive-pack cut off",
                extra={"path": str(path), "removed": [p.name for p in removed]},
            )

    def running(self, path: Path) -> int:
        """How many receive-packs run in `path` (also safe from another thread)."""
        return self._pushes.running(path)


def _lock_files(repository: Path) -> list[Path]:
    """The `*.lock` files at the top of `repository` and anywhere under its refs/."""
    locks = [repository / name for name in _names(repository) if name.endswith(LOCK_SUFFIX)]
    for directory, _subdirectories, files in os.walk(repository / "refs"):
        locks += [Path(directory, name) for name in files if name.endswith(LOCK_SUFFIX)]
    return [lock for lock in locks if not lock.is_dir() or lock.is_symlink()]


def _removed(entry: Path) -> bool:
    """Remove the file, symbolic link or directory tree `entry`; whether it is gone (a
    temporary the node may not remove - another owner's, on a read-only or immutable
    directory - is logged and left)."""
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove a temporary", extra={"path": str(entry), "error": str(exc)})
        return False
    if os.path.lexists(entry):
        log.warning("could not remove a temporary entirely", extra={"path": str(entry)})
        return False
    return True


def _names(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _survey(entry: Path) -> tuple[int, float, bool]:
    """Bytes of the regular files at or under `entry`, the newest mtime of `entry` and
    of everything under it ((0, 0.0) when it vanished), and whether `entry` is or holds
    a bare repository (HEAD, objects/ and refs/ in one directory: never in what git
    leaves)."""
    try:
        top = os.lstat(entry)
    except OSError:
        return 0, 0.0, False
    if not stat.S_ISDIR(top.st_mode):
        return top.st_size, top.st_mtime, False
    size, newest, holds_repository = 0, top.st_mtime, False
    for directory, subdirectories, files in os.walk(entry):
        if "HEAD" in files and {"objects", "refs"} <= set(subdirectories):
            holds_repository = True
        for name in (*subdirectories, *files):
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(directory, name))
                newest = max(newest, info.st_mtime)
                if stat.S_ISREG(info.st_mode):
                    size += info.st_size
    return size, newest, holds_repository
