"""Snapshots taken off the tick thread hold exactly the state pinned when they began."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pysyncobj import SERIALIZER_STATE

from cluster.metadata import schema, snapshot, statemachine

DATA = ((b"last", 41, 3), (b"prev", 40, 3), ["127.0.0.1:1", "127.0.0.1:2"])


def register(conn: Any, first: int, count: int) -> None:
    for i in range(first, first + count):
        cmd = {"op": "register_storage", "cid": f"c{i}", "args": {"name": f"s{i:05}", "address": "x"}}
        statemachine.apply(conn, cmd, i + 2)


def wait(snaps: snapshot.BackgroundSnapshots) -> int:
    deadline = time.monotonic() + 30
    while (state := snaps.checker()) == SERIALIZER_STATE.SERIALIZING:
        assert time.monotonic() < deadline, "snapshot did not finish"
        time.sleep(0.01)
    return state


def test_snapshot_holds_the_pinned_state_while_applies_go_on(tmp_path: Path) -> None:
    db_path, dump = tmp_path / "state.db", tmp_path / "raft.dump"
    live = schema.connect(str(db_path))
    schema.create(live)
    register(live, 0, 2000)
    pinned = schema.dump_state(live)
    stale = tmp_path / "raft.dump.tmp"
    stale.write_bytes(b"left over from a crash")

    snaps = snapshot.BackgroundSnapshots(db_path, dump)
    assert snaps.checker() == SERIALIZER_STATE.NOT_SERIALIZING
    snaps.serializer(str(stale), DATA)
    assert not stale.exists()  # nothing for pysyncobj to rename over the dump
    register(live, 2000, 500)  # the tick thread goes on applying meanwhile
    assert wait(snaps) == SERIALIZER_STATE.SUCCESS
    assert snaps.checker() == SERIALIZER_STATE.NOT_SERIALIZING  # SUCCESS is reported once

    fresh = schema.connect(str(tmp_path / "restored.db"))
    schema.create(fresh)
    last, prev, members = snapshot.restore(str(dump), fresh)
    assert (last, prev, members) == ((b"last", 41, 3), (b"prev", 40, 3), ["127.0.0.1:1", "127.0.0.1:2"])
    assert schema.dump_state(fresh) == pinned
    assert fresh.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for conn in (live, fresh):
        conn.close()


def test_a_restore_during_the_copy_discards_it(tmp_path: Path) -> None:
    db_path, dump = tmp_path / "state.db", tmp_path / "raft.dump"
    live = schema.connect(str(db_path))
    schema.create(live)
    register(live, 0, 100)
    dump.write_bytes(b"the dump received from the leader")
    snaps = snapshot.BackgroundSnapshots(db_path, dump)
    snaps.serializer(str(tmp_path / "raft.dump.tmp"), DATA)
    snaps.invalidate()
    assert wait(snaps) == SERIALIZER_STATE.FAILED
    assert dump.read_bytes() == b"the dump received from the leader"
    assert not Path(f"{dump}.bg").exists()
    live.close()
