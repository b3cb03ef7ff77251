"""The check of a replication copy's objects (node.replica_copy), shared by the copies
that reach it together.

A copy's new objects sit in a quarantine beside the replica until `git fsck --strict`
(FSCK_CONFIG: the push policy of node.fsck) has passed them: content by the policy,
every hash and pack checksum, and every object reachable from the copy's new refs
present in the quarantine or the replica. One git process per copy is most of what
copying a small repository costs on the target, so `check` works like a group commit:

- checks queue; one group runs at a time. Before a group leaves, it waits - at most
  LINGER seconds - for the replications running on this node that have not reached
  their check yet (`expected()`: counted from the start of a replication until its
  copy asks for its check or the replication ends otherwise). A check with nobody on
  the way leaves at once;
- a group of one runs `git fsck` with the quarantine as the object directory and the
  replica's objects as its alternate, the copy's tips as arguments: exactly the copy's
  objects;
- a larger group (at most MAX_GROUP) runs one `git fsck --full` over every member's
  quarantine and replica (the first quarantine as the object directory, the rest as
  alternates, in git's environment), with every member's tips. Its content checks are
  the same for each object wherever it lies; its reachability holds only for the
  union (repositories share objects: a README's blob), so each member's own
  reachability is then walked with pygit2 over its quarantine and replica. A member
  whose copy brings more than GROUP_OBJECTS objects is checked alone (a long walk in
  Python costs more than its own fsck), as is a group whose paths git's environment
  cannot list (a colon or a quote in a path);
- a group that fails is checked again member by member, so only the faulty ones are
  refused.

Measured (git 2.39, 3 objects a copy): one fsck 3.6 ms of CPU; a group of 2, 4, 8
costs 1.8, 1.25, 1.0 ms a member. A caller cancelled while its check runs leaves it
running; its quarantine may vanish meanwhile, which fails that group, whose other
members are then checked alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import struct
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pygit2
from prometheus_client import Counter as MetricCounter

from node import fsck
from node.git import run_git

log = logging.getLogger(__name__)

# `git fsck` as a copy runs it: strict, by the push policy; no commit-graph or
# multi-pack-index verification (two more git processes per object directory, for
# files a copy never brings).
FSCK_CONFIG = ("core.commitGraph=false", "core.multiPackIndex=false", *fsck.fsck_config())
# --full: the objects of the alternates too (the replica's own, small like its source;
# a group's members), since fsck's reachability walk finds only objects it has read.
FSCK_FLAGS = ("--strict", "--full", "--no-dangling", "--no-reflogs", "--no-progress")
# Most checks of one `git fsck` in a group.
MAX_GROUP = 16
# A copy bringing more objects than this is checked alone (see module doc).
GROUP_OBJECTS = 256
# Longest wait of a group for the replications on their way to their check.
LINGER = 0.025
_GITLINK = 0o160000  # a submodule's commit: it lives in another repository
CHECKS = MetricCounter(
    "gitraft_node_copy_checks",
    "git fsck runs checking objects a replication copied (how: alone, one copy's objects; "
    "group, several copies checked together), and copies checked (copies).",
    ["how"],
)


class CheckFailed(Exception):
    """The copy's objects fail the check (the reason: git's first finding)."""


@dataclass
class _Check:
    repo: Path
    quarantine: Path
    tips: list[str]
    objects: int
    future: asyncio.Future[None] = field(repr=False)


class _Expected:
    """A replication on its way to its check (see `CopyChecker.expected`)."""

    def __init__(self, checker: CopyChecker) -> None:
        self._checker: CopyChecker | None = checker

    def arrived(self) -> None:
        """It asked for its check, or ended without one (idempotent)."""
        if self._checker is not None:
            self._checker._coming -= 1
            self._checker._changed.set()
            self._checker = None


_EXPECTED: contextvars.ContextVar[_Expected | None] = contextvars.ContextVar(
    "copy_check_expected", default=None
)


class CopyChecker:
    """Checks of copied objects on one event loop (see module doc)."""

    def __init__(self) -> None:
        self._waiting: list[_Check] = []
        self._running: asyncio.Task[None] | None = None
        self._coming = 0
        self._changed = asyncio.Event()

    @contextlib.contextmanager
    def expected(self) -> Iterator[None]:
        """Within: this task's replication counts as on its way to a check, until its
        `check` (or the block's end)."""
        ticket = _Expected(self)
        self._coming += 1
        token = _EXPECTED.set(ticket)
        try:
            yield
        finally:
            _EXPECTED.reset(token)
            ticket.arrived()

    async def check(self, repo: Path, quarantine: Path, tips: list[str], objects: int) -> None:
        """Return once the `objects` objects in `quarantine` (-1: unknown), bound for
        `repo`, passed the check with `tips` as the copy's new ref targets; CheckFailed
        otherwise."""
        ticket = _EXPECTED.get()
        if ticket is not None:
            ticket.arrived()
        if not tips:
            return
        CHECKS.labels("copies").inc()
        loop = asyncio.get_running_loop()
        item = _Check(repo, quarantine, tips, objects, loop.create_future())
        # Retrieved here, so a caller cancelled meanwhile leaves no "never retrieved" warning.
        item.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        if not 0 <= objects <= GROUP_OBJECTS:
            await _alone(item)
            return
        self._waiting.append(item)
        self._changed.set()
        if self._running is None:
            self._running = loop.create_task(self._drain())
        await asyncio.shield(item.future)

    async def _drain(self) -> None:
        group: list[_Check] = []
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                deadline = loop.time() + LINGER
                while self._coming > 0 and len(self._waiting) < MAX_GROUP and loop.time() < deadline:
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                await _check_group(group)
        except BaseException as exc:  # never leave a caller waiting for ever
            for item in [*group, *self._waiting]:
                _settle(item, exc if isinstance(exc, Exception) else CheckFailed("the check was stopped"))
            self._waiting = []
            raise
        finally:
            self._running = None


_checkers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CopyChecker] = weakref.WeakKeyDictionary()


def checker() -> CopyChecker:
    """The running loop's CopyChecker."""
    loop = asyncio.get_running_loop()
    found = _checkers.get(loop)
    if found is None:
        found = _checkers[loop] = CopyChecker()
    return found


async def _check_group(group: list[_Check]) -> None:
    """Settle every member's future: None, or the CheckFailed of its own check."""
    if len(group) > 1 and _listable(group):
        try:
            passed = await _together(group) is None
            missing = (
                await asyncio.to_thread(lambda: [_unreachable(item) for item in group]) if passed else []
            )
        except Exception:  # e.g. a member's quarantine removed meanwhile: each alone then
            log.info("a group check of copied objects failed; checking each alone", exc_info=True)
            missing = []
        if missing:
            for item, oid in zip(group, missing, strict=True):
                _settle(item, None if oid is None else CheckFailed(f"error: {oid}: object missing"))
            return
    for item in group:
        try:
            await _alone(item)
        except Exception as exc:  # its caller raises it (CheckFailed, or why git did not run)
            _settle(item, exc)
        else:
            _settle(item, None)


def _settle(item: _Check, error: BaseException | None) -> None:
    if item.future.done():
        return
    if error is None:
        item.future.set_result(None)
    else:
        item.future.set_exception(error)


async def _alone(item: _Check) -> None:
    """`git fsck` of one copy: its quarantine as the object directory, its replica's
    objects as the alternate."""
    CHECKS.labels("alone").inc()
    await _fsck(item.repo, item.quarantine, [item.repo / "objects"], item.tips)


def _listable(group: list[_Check]) -> bool:
    """Whether every member's paths can be listed in GIT_ALTERNATE_OBJECT_DIRECTORIES
    (colon-separated; a path starting with a quote would be read as quoted)."""
    return not any(
        ch in str(path) for item in group for path in (item.quarantine, item.repo) for ch in ':"\\\n'
    )


async def _together(group: list[_Check]) -> str | None:
    """One `git fsck` over every member's quarantine and replica; None when it passed,
    else its first finding."""
    CHECKS.labels("group").inc()
    others = [p for item in group for p in (item.quarantine, item.repo / "objects")][1:]
    tips = sorted({tip for item in group for tip in item.tips})
    try:
        await _fsck(group[0].repo, group[0].quarantine, others, tips)
    except CheckFailed as exc:
        return str(exc)
    return None


async def _fsck(repo: Path, objects: Path, alternates: list[Path], tips: list[str]) -> None:
    """`git fsck` (FSCK_FLAGS, FSCK_CONFIG) of `objects` and `alternates` from `tips`, in
    `repo`; CheckFailed with git's first finding when it fails."""
    checked = await run_git(
        [*(arg for option in FSCK_CONFIG for arg in ("-c", option)), "fsck", *FSCK_FLAGS, *tips],
        git_dir=repo,
        env={
            "GIT_OBJECT_DIRECTORY": str(objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": ":".join(str(p) for p in alternates),
        },
        check=False,
        # Reads quarantines of at most MAX_REPLICATION_COPY_LIMIT for milliseconds:
        # without setpriv's exec (~1 ms, a fifth of the check).
        dies_with_node=False,
    )
    if checked.exit_code != 0:
        raise CheckFailed(fsck.rejection(checked.stderr) or first_error(checked.stderr + checked.stdout))


def _unreachable(item: _Check) -> str | None:
    """The first object reachable from the member's tips that is neither in its
    quarantine nor in its replica (None: all are there). Blocking."""
    repo = pygit2.Repository(str(item.repo))
    repo.odb.add_disk_alternate(str(item.quarantine))
    seen: set[pygit2.Oid] = set()
    stack = [pygit2.Oid(hex=tip) for tip in item.tips]
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        obj = repo.get(oid)
        if obj is None:
            return str(oid)
        if isinstance(obj, pygit2.Commit):
            stack.append(obj.tree_id)
            stack.extend(obj.parent_ids)
        elif isinstance(obj, pygit2.Tree):
            for entry in obj:
                if entry.filemode == _GITLINK:
                    continue
                if entry.type_str == "blob":
                    if entry.id not in seen:
                        if entry.id not in repo:
                            return str(entry.id)
                        seen.add(entry.id)
                else:
                    stack.append(entry.id)
        elif isinstance(obj, pygit2.Tag):
            stack.append(obj.target)
    return None


def pack_object_count(index: bytes) -> int:
    """Objects in a pack, from its version-2 index (the last fan-out entry); -1 for an
    index this does not read."""
    if len(index) < 8 + 256 * 4 or index[:4] != b"\xfftOc":
        return -1
    return int(struct.unpack(">I", index[8 + 255 * 4 : 8 + 256 * 4])[0])


def first_error(output: bytes) -> str:
    """git fsck's first error line in `output` (its stderr then stdout), else its first
    line (a missing object reached through a tree is reported on stdout as "broken link
    from tree ..." then "missing blob ...")."""
    lines = [line.strip() for line in output.decode(errors="replace").splitlines() if line.strip()]
    for start in ("error", "missing", "broken link"):
        found = [line for line in lines if line.startswith(start)]
        if found:
            return found[0]
    return lines[0] if lines else "no reason given"
