"""`RaftDatabase`: pysyncobj behind our small interface, applying commands to SQLite.

One pysyncobj member per proxy. Its only replicated method, `apply_entry` (`ver=0`,
never renamed: pysyncobj numbers methods by position), hands the entry's bytes to
`statemachine.apply_payload` on this member's SQLite connection, on pysyncobj's tick
thread. `submit()` is thread-safe and reports through a callback on that thread.

Durability and exactly-once (why a SIGKILLed proxy returns with exactly the committed
state and never applies an entry twice):

1. The live database file (`state.db`) is *derived*: it is deleted and recreated
   empty every time a member starts; nothing in it is trusted across a restart.
2. pysyncobj's own files are the truth: the journal (`raft.journal`, every entry as
   it arrives, with term/vote/commit index in `raft.journal.meta`) and the full dump
   (`raft.dump`), written at log compaction (`cluster.metadata.snapshot`): the
   database as pinned on the tick thread between two applies - so it holds exactly
   the entries up to `raftLastApplied` - copied in the background, plus, *in the same
   file*, the (index, term) of the last two applied entries that pysyncobj keeps. The
   file appears by one atomic rename, and pysyncobj truncates its journal only after
   that, so state and "what it includes" cannot disagree.
3. At start pysyncobj loads the dump through `_restore` (the backup replaces the whole
   database, erasing anything applied before it), sets `raftLastApplied` to the dump's
   last index, and re-applies only later journal entries, each once, in log order;
   entries not yet known to be committed wait for the leader. A follower that is too
   far behind receives the leader's dump file and restores it the same way.
4. Belt and braces: `meta.applied_index` is written in the same SQLite transaction as
   each command's changes, and `apply` refuses an index at or below it.

Not fsynced (pysyncobj writes the journal through mmap): a killed process loses
nothing, a power loss may lose acknowledged entries (upstream #84).

Traps from NOTES.md handled here: `journalFile` always with `fullDumpFile`; no state
in Python attributes (nothing for the tick thread's dump load to overwrite: the
database exists before `SyncObj.__init__` and only `_restore` replaces it); the
replicated method never raises; a custom serializer, so pysyncobj never forks, whose
copy runs off the tick thread; the Raft port requires `password` and binds `self_addr`;
`leaderFallbackTimeout` tuned; callbacks never raise. The transport is
`cluster.metadata.transport.BoundedTransport`: a stranger's oversized frame is refused
before it is buffered (issue #7).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjException, replicated
from pysyncobj.encryptor import HAS_CRYPTO

from cluster.metadata import schema, snapshot, statemachine
from cluster.metadata.config import RaftConfig
from cluster.metadata.transport import BoundedTransport, FrameLimits
from common.errors import InvalidArgumentError, UnavailableError

log = logging.getLogger(__name__)

Callback = Callable[[Any, int], None]

BIND_RETRY = 0.25
FAIL_REASONS = {v: k.lower() for k, v in vars(FAIL_REASON).items() if k.isupper()}


class _Member(SyncObj):
    """The pysyncobj member: state lives in `owner`'s SQLite database, not here."""

    def __init__(
        self, owner: RaftDatabase, self_addr: str, peers: list[str], conf: SyncObjConf, limits: FrameLimits
    ) -> None:
        self._owner = owner  # set before SyncObj starts its tick thread
        owner._member = self  # the deserializer may run on the first tick, before __init__ returns
        super().__init__(self_addr, peers, conf, transportClass=BoundedTransport.with_limits(limits))

    @replicated(ver=0)
    def apply_entry(self, payload: bytes) -> Any:
        return self._owner._apply(payload, self.raftLastApplied + 1)

    def election_deadline(self) -> float:
        """Tick thread: pysyncobj's election deadline (monotonic seconds)."""
        deadline: float = self._SyncObj__raftElectionDeadline
        return deadline

    def listen_for_leader(self) -> float:
        """Tick thread: start a new election timeout now, as a heartbeat would.

        pysyncobj checks its election deadline at the top of a tick, before it polls
        the network: local work longer than the timeout - a snapshot restore (a
        10,000-repository state at start, or one sent by the leader), or the first tick
        of a restarted member applying thousands of journal entries - made a follower
        that had not yet read the leader's heartbeats stand for election at once, and,
        with no pre-vote in pysyncobj, its higher term deposed a healthy leader (seen as
        Raft terms 1 -> 3 while a follower proxy restarted, in bench/scale_bench.py at
        10,000 repositories). Called after a restore and after any long tick
        (`RaftDatabase._after_tick`). A live leader's next heartbeat arrives well within
        the fresh timeout; a dead one is still replaced one timeout later.
        """
        deadline: float = monotonic() + self._SyncObj__generateRaftTimeout()
        self._SyncObj__raftElectionDeadline = deadline
        return deadline


class RaftDatabase:
    """One Raft member whose state machine is a SQLite database at `config.db_path`."""

    def __init__(self, config: RaftConfig) -> None:
        if not config.password:
            raise InvalidArgumentError("raft: a password is required (the raft port unpickles its input)")
        if not HAS_CRYPTO:
            raise UnavailableError(
                "raft: the password needs the 'cryptography' package, which is not installed"
            )
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{config.db_path}{suffix}").unlink(missing_ok=True)
        self._db = schema.connect(str(config.db_path), check_same_thread=False)
        schema.create(self._db)
        self._ticked = threading.Event()
        self._snapshots = snapshot.BackgroundSnapshots(config.db_path, config.dump_path)
        self.limits = FrameLimits(
            before_auth=config.max_frame_before_auth, after_auth=config.max_frame_after_auth
        )
        self._created = monotonic()
        self._last_tick: float | None = None
        self._own_deadline: float | None = None  # the deadline _after_tick last set
        self._member = _Member(self, config.self_addr, list(config.peers), self._conf(), self.limits)
        self._member.addOnTickCallback(self._after_tick)

    def _after_tick(self) -> None:
        """Tick thread, after a tick's work and before it polls the network: a member that
        has not polled for a while (its first full tick, or a tick that applied a long
        run of entries - a restarted member replays its journal's committed entries in
        one tick) starts a fresh election timeout, so it hears the leader's waiting
        heartbeats before it may stand (see `_Member.listen_for_leader`).

        Once per deadline pysyncobj set (a heartbeat, a vote, its own candidacy): when
        the deadline is still the one set here, nobody spoke since, so it is left to
        expire. Otherwise a member whose every tick is long (a busy tick thread, or a
        tick_interval over half the timeout) pushed it forever and never stood, even
        with the leader dead; a dead leader is now replaced within two timeouts."""
        now = monotonic()
        last, self._last_tick = self._last_tick, now
        held = now - (last or self._created)
        if held > self.config.election_timeout_min:  # what explains an election in the logs
            log.log(
                logging.WARNING if last else logging.INFO,
                "raft: %s %.2f s (election timeout %.2f-%.2f s)",
                "the tick thread was held" if last else "journal loaded and applied in",
                held,
                self.config.election_timeout_min,
                self.config.election_timeout_max,
            )
        long_tick = last is None or now - last > self.config.election_timeout_min / 2
        if long_tick and self._member.election_deadline() != self._own_deadline:
            self._own_deadline = self._member.listen_for_leader()
        self._ticked.set()

    def _conf(self) -> SyncObjConf:
        c = self.config
        return SyncObjConf(
            password=c.password,
            bindAddress=c.bind_addr or c.self_addr,
            bindRetryTime=BIND_RETRY,
            maxBindRetries=max(1, round(c.bind_timeout / BIND_RETRY)),
            journalFile=str(c.journal_path),
            fullDumpFile=str(c.dump_path),
            serializer=self._snapshots.serializer,
            serializeChecker=self._snapshots.checker,
            deserializer=self._restore,
            useFork=False,
            autoTickPeriod=c.tick_interval,
            raftMinTimeout=c.election_timeout_min,
            raftMaxTimeout=c.election_timeout_max,
            appendEntriesPeriod=c.heartbeat_interval,
            appendEntriesUseBatch=c.batch_appends,
            connectionTimeout=c.connection_timeout,
            connectionRetryTime=c.connection_retry,
            leaderFallbackTimeout=c.leader_fallback_timeout,
            logCompactionMinEntries=c.compaction_min_entries,
            logCompactionMinTime=c.compaction_min_seconds,
            # Fail fast without a leader; the store retries until its own timeout.
            commandsWaitLeader=False,
            dynamicMembershipChange=False,
        )

    # --- commands -------------------------------------------------------------

    def submit(self, payload: bytes, callback: Callback) -> None:
        """Propose one entry (thread-safe). `callback(result, fail_reason)` runs on the
        tick thread after the entry is applied *here*, or with a failure reason; it must
        not block or raise. InvalidArgumentError if `payload` could not cross the Raft
        port (its frames would exceed `max_frame_after_auth`)."""
        if len(payload) > self.limits.max_payload():
            raise InvalidArgumentError(
                f"raft: command of {len(payload)} bytes exceeds the limit of {self.limits.max_payload()}"
            )
        self._member.apply_entry(payload, callback=_guarded(callback))

    def _apply(self, payload: bytes, index: int) -> Any:
        """Apply one entry; never raises. A failure of the local database stops the
        process (fail-stop, as etcd does): the database is derived, so a restart rebuilds
        it from the journal, whereas carrying on would silently diverge from the others."""
        try:
            result = statemachine.apply_payload(self._db, payload, index)
        except BaseException as exc:  # pragma: no cover - apply_payload never raises
            result = {"error": "internal", "message": repr(exc), "fatal": True}
        if isinstance(result, dict) and result.get("fatal"):
            _fail_stop(f"cannot apply entry {index}: {result.get('message')}")
        return result

    # --- snapshots (see cluster.metadata.snapshot) ------------------------------

    def _restore(self, path: str) -> tuple[Any, ...]:
        """pysyncobj deserializer (tick thread): replace the whole live database with the
        snapshot at `path`.

        pysyncobj swallows a deserializer's exception and carries on with the wrong
        state, so a failure here stops the process instead (see `_apply`)."""
        self._snapshots.invalidate()
        try:
            last, prev, members = snapshot.restore(path, self._db)
            schema.create(self._db)  # tables, columns, indexes or triggers an older snapshot lacks
        except Exception as exc:
            _fail_stop(f"cannot restore snapshot {path!r}: {exc!r}")
            raise
        log.info(
            "restored snapshot at index %d (applied_index %d)", last[1], statemachine.applied_index(self._db)
        )
        self._member.listen_for_leader()
        return last, prev, members

    # --- state ---------------------------------------------------------------

    def wait_started(self, timeout: float) -> None:
        """Block until the Raft port is bound and the first tick ran (dump loaded, local
        committed entries applied); UnavailableError if the port cannot be bound."""
        try:
            self._member.waitBinded()
        except SyncObjException as exc:
            raise UnavailableError(
                f"raft: cannot bind {self.config.bind_addr or self.config.self_addr!r}"
            ) from exc
        if not self._ticked.wait(timeout):
            raise UnavailableError(f"raft: member did not start within {timeout:g}s")

    def status(self) -> dict[str, Any]:
        for _ in range(5):  # the tick thread may resize a dict while we read it
            with contextlib.suppress(RuntimeError):
                return dict(self._member.getStatus())
        return {}

    def is_leader(self) -> bool:
        return bool(self._member._isLeader())

    def leader(self) -> str:
        node = self._member._getLeader()
        return str(node.id) if node is not None else ""

    def add_tick_callback(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the tick thread after each tick (quick; must not raise)."""
        self._member.addOnTickCallback(callback)

    def applied_index(self) -> int:
        return int(self._member.raftLastApplied)

    def force_compaction(self) -> None:
        """Snapshot and truncate the journal at the next tick (tests, operators)."""
        self._member.forceLogCompaction()

    def close(self) -> None:
        """Stop the tick thread (journal flushed), then close the database."""
        self._member.destroy_synchronous()
        self._db.close()


def _fail_stop(reason: str) -> None:
    """Log and exit at once (no cleanup: nothing half-done may be persisted)."""
    log.critical("raft member stopping: %s", reason)
    logging.shutdown()
    os._exit(70)


def _guarded(callback: Callback) -> Callback:
    """A callback that cannot raise into pysyncobj (which would re-apply the entry)."""

    def call(result: Any, reason: int) -> None:
        try:
            callback(result, reason)
        except Exception:
            log.exception("raft callback raised")

    return call
