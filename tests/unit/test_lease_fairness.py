"""`lease_jobs` with a deep backlog: the replication of new writes is not queued behind
it (issue #11: a recovering node's backlog must not starve new writes), and the
backlog still drains. The state machine alone, on SQLite."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from cluster.metadata import commands, schema, statemachine


class Machine:
    def __init__(self) -> None:
        self.conn = schema.connect(":memory:")
        schema.create(self.conn)
        self.index = itertools.count(2)
        self.cids = itertools.count(1)

    def ok(self, op: str, **args: Any) -> Any:
        command = {"op": op, "args": args, "cid": f"c{next(self.cids)}"}
        result = statemachine.apply_payload(self.conn, statemachine.encode(command), next(self.index))
        assert "ok" in result, result
        return result["ok"]

    def written(self, rid: str, now: float) -> None:
        """A repository on a, b, c (primary a), written once at `now`: jobs a -> b, a -> c."""
        self.ok(
            "create_repository",
            repository_id=rid,
            relative_path=f"{rid}.git",
            replica_path=f"@cluster/{rid}.git",
            storages=["a", "b", "c"],
            primary="a",
            replication_factor=3,
            now=now,
        )
        self.ok(
            "begin_write",
            intent_id=f"w-{rid}",
            repository_id=rid,
            storages=["a"],
            proxy="p",
            deadline=now + 60,
        )
        self.ok("finish_write", intent_id=f"w-{rid}", succeeded=["a"], failed=[], now=now)

    def lease(self, now: float, limit: int = 1) -> list[str]:
        jobs = self.ok(
            "lease_jobs",
            owner="w",
            now=now,
            lease_seconds=30.0,
            limit=limit,
            healthy=["a", "b", "c"],
            **commands.REGISTRY["lease_jobs"].constants,  # as the store sends it
        )
        return [f"{j['repository_id']}->{j['target']}" for j in jobs]


@pytest.fixture
def m() -> Iterator[Machine]:
    machine = Machine()
    for i, name in enumerate("abc"):
        machine.ok("register_storage", name=name, address=f"127.0.0.1:{i + 1}")
    for i in range(400):  # the backlog: 800 jobs, an hour old
        machine.written(f"old{i:03}", now=2.0)
    yield machine
    machine.conn.close()


def test_a_new_write_is_leased_before_the_backlog(m: Machine) -> None:
    m.written("new", now=3600.0)
    assert m.lease(3600.0) == ["new->b"]
    assert m.lease(3600.2, limit=2) == ["new->c", "old000->b"]


def test_the_backlog_still_gets_every_other_second(m: Machine) -> None:
    got: list[str] = []
    for i in range(20):  # a new write every half second, one lease after each
        now = 3600.0 + i / 2
        m.written(f"new{i:02}", now=now)
        got += m.lease(now)
    old = [j for j in got if j.startswith("old")]
    assert old[:3] == ["old000->b", "old000->c", "old001->b"]  # oldest first
    assert 8 <= len(old) <= 12, got


def hot_repository_written_while_its_copies_run(m: Machine) -> None:
    """A hot repository: its first copies run long (a big fetch, a loaded machine), and
    the writes meanwhile merge into one waiting job per target, created at the first
    of them (3605); the long copies complete at 3620."""
    m.written("hot", now=3600.0)
    running = m.ok("lease_jobs", owner="w", now=3600.0, lease_seconds=60.0, limit=2, healthy=["a", "b", "c"])
    assert sorted(j["repository_id"] for j in running) == ["hot", "hot"]
    for i, now in enumerate((3605.0, 3610.0, 3615.0, 3620.0)):
        m.ok(
            "begin_write",
            intent_id=f"w-hot-{i}",
            repository_id="hot",
            storages=["a"],
            proxy="p",
            deadline=now + 60,
        )
        m.ok("finish_write", intent_id=f"w-hot-{i}", succeeded=["a"], failed=[], now=now)
    for job in running:
        m.ok("complete_job", job_id=job["id"], owner="w", now=3620.0, removed_is_noop=True)


def test_new_writes_merged_into_a_waiting_job_keep_it_fresh(m: Machine) -> None:
    # Still the replication of new writes: not queued behind the backlog.
    hot_repository_written_while_its_copies_run(m)
    assert m.lease(3620.0, limit=2) == ["hot->b", "hot->c"]


def test_a_lease_logged_before_fresh_by_update_applies_as_it_did(m: Machine) -> None:
    hot_repository_written_while_its_copies_run(m)
    old = m.ok("lease_jobs", owner="w", now=3620.0, lease_seconds=30.0, limit=2, healthy=["a", "b", "c"])
    assert [f"{j['repository_id']}->{j['target']}" for j in old] == ["old000->b", "old000->c"]
