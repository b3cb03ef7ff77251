"""Snapshots of the metadata database for pysyncobj's log compaction, off the tick thread.

A snapshot file is a self-contained SQLite database: the state tables as of one log
index, plus `raft_snapshot` (pysyncobj's last two applied entries: command, index,
term) and `raft_members`, so state and "what it includes" travel in one file that
appears by one atomic rename.

pysyncobj calls its `serializer` on the tick thread and, by default, waits for it: a
SQLite backup of ~100k rows stalls Raft for 0.05-0.2 s (1 s at 1M rows), enough to
trigger elections. `BackgroundSnapshots` instead *pins* the current state on the tick
thread - a read transaction on a second connection, which in WAL mode keeps seeing
exactly the entries applied so far - and copies it in a background thread while the
tick thread goes on applying. pysyncobj 0.3.17 renames the serializer's output file as
soon as the serializer returns, so the serializer writes nothing there (pysyncobj's
rename then fails, which it ignores) and `serializeChecker` reports progress: on the
tick thread, when the copy is done, it renames the finished file into place and reports
SUCCESS, and only then does pysyncobj truncate its journal. A snapshot received from
the leader meanwhile (restored on the tick thread too) makes the copy stale: it is
discarded.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from pysyncobj import SERIALIZER_STATE

log = logging.getLogger(__name__)


def write(source: sqlite3.Connection, path: str, data: tuple[Any, ...]) -> None:
    """Write `source`'s database (its open read transaction's view, if any) and
    pysyncobj's `data` = (last entry, previous entry, member nodes) into `path`."""
    last, prev, members = data
    Path(path).unlink(missing_ok=True)
    dst = sqlite3.connect(path, isolation_level=None)
    try:
        source.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.execute("CREATE TABLE raft_snapshot (pos INTEGER, command BLOB, idx INTEGER, term INTEGER)")
        dst.executemany(
            "INSERT INTO raft_snapshot VALUES (?, ?, ?, ?)",
            [(0, bytes(last[0]), last[1], last[2]), (1, bytes(prev[0]), prev[1], prev[2])],
        )
        dst.execute("CREATE TABLE raft_members (addresses TEXT)")
        addresses = sorted(getattr(n, "id", n) for n in members)
        dst.execute("INSERT INTO raft_members VALUES (?)", (json.dumps(addresses),))
    finally:
        dst.close()


def restore(path: str, target: sqlite3.Connection) -> tuple[Any, ...]:
    """Replace all of `target`'s database with the snapshot at `path`; returns
    pysyncobj's (last entry, previous entry, member addresses)."""
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = src.execute("SELECT command, idx, term FROM raft_snapshot ORDER BY pos").fetchall()
        members = json.loads(src.execute("SELECT addresses FROM raft_members").fetchone()[0])
        src.backup(target)
    finally:
        src.close()
    target.execute("DROP TABLE IF EXISTS raft_snapshot")
    target.execute("DROP TABLE IF EXISTS raft_members")
    target.execute("PRAGMA journal_mode=WAL")
    last, prev = (tuple(r) for r in rows)
    return last, prev, members


class BackgroundSnapshots:
    """pysyncobj `serializer` + `serializeChecker` that copy the database in a thread."""

    def __init__(self, db_path: Path, dump_path: Path) -> None:
        self._db_path = str(db_path)
        self._dump_path = str(dump_path)
        self._work_path = f"{dump_path}.bg"
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._epoch = 0  # bumped by every restore
        self._started_epoch = 0
        self._index = 0
        self._started = 0.0
        self.last_seconds = 0.0
        Path(self._work_path).unlink(missing_ok=True)

    def serializer(self, pysyncobj_tmp: str, data: tuple[Any, ...]) -> None:
        """Tick thread, between two applies: pin the state, start the copy, return."""
        # Never leave a file where pysyncobj would rename it over the real dump.
        Path(pysyncobj_tmp).unlink(missing_ok=True)
        reader = sqlite3.connect(self._db_path, isolation_level=None, check_same_thread=False)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM meta").fetchone()  # the read snapshot starts here
        self._error = None
        self._started_epoch = self._epoch
        self._index = int(data[0][1])
        self._started = time.monotonic()
        self._thread = threading.Thread(
            target=self._copy, args=(reader, data), name="raft-snapshot", daemon=True
        )
        self._thread.start()

    def _copy(self, reader: sqlite3.Connection, data: tuple[Any, ...]) -> None:
        try:
            write(reader, self._work_path, data)
        except BaseException as exc:
            self._error = exc
        finally:
            reader.close()

    def checker(self) -> int:
        """Tick thread: SERIALIZING while copying; then, once, SUCCESS (the file is in
        place) or FAILED; NOT_SERIALIZING otherwise."""
        if self._thread is None:
            return int(SERIALIZER_STATE.NOT_SERIALIZING)
        if self._thread.is_alive():
            return int(SERIALIZER_STATE.SERIALIZING)
        self._thread = None
        if self._error is not None or self._started_epoch != self._epoch:
            why = repr(self._error) if self._error is not None else "a snapshot was restored meanwhile"
            log.warning("snapshot at index %d discarded: %s", self._index, why)
            Path(self._work_path).unlink(missing_ok=True)
            return int(SERIALIZER_STATE.FAILED)
        try:
            os.replace(self._work_path, self._dump_path)
        except OSError as exc:
            log.warning("snapshot at index %d not stored: %r", self._index, exc)
            return int(SERIALIZER_STATE.FAILED)
        self.last_seconds = time.monotonic() - self._started
        log.info(
            "snapshot at index %d written in %.3fs (off the tick thread)", self._index, self.last_seconds
        )
        return int(SERIALIZER_STATE.SUCCESS)

    def invalidate(self) -> None:
        """Tick thread, when a snapshot is restored: a copy in progress is now stale."""
        self._epoch += 1
