"""The metadata state machine alone: commands applied to SQLite, no Raft, no network."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from typing import Any

import aiosqlite
import pytest

from cluster.metadata import queries, schema, statemachine
from cluster.metadata.api import HealthVote, JobState


class Machine:
    """A state machine on an in-memory database, fed one log index at a time."""

    def __init__(self) -> None:
        self.conn = schema.connect(":memory:")
        schema.create(self.conn)
        self.index = itertools.count(2)
        self.cids = itertools.count(1)

    def apply(self, op: str, cid: str | None = None, **args: Any) -> Any:
        command = {"op": op, "args": args, "cid": cid or f"c{next(self.cids)}"}
        return statemachine.apply_payload(self.conn, statemachine.encode(command), next(self.index))

    def ok(self, op: str, **args: Any) -> Any:
        result = self.apply(op, **args)
        assert "ok" in result, result
        return result["ok"]

    def error(self, op: str, **args: Any) -> str:
        result = self.apply(op, **args)
        assert "error" in result, result
        return str(result["error"])

    def generations(self, rid: str) -> dict[str, int]:
        rows = self.conn.execute("SELECT storage, generation FROM replicas WHERE repository_id = ?", (rid,))
        return dict(rows.fetchall())

    def jobs(self) -> list[tuple[Any, ...]]:
        return self.conn.execute(
            "SELECT id, target, state, source_generation, lease_owner, attempts"
            " FROM replication_jobs ORDER BY id"
        ).fetchall()


@pytest.fixture
def m() -> Iterator[Machine]:
    machine = Machine()
    machine.ok("register_storage", name="a", address="127.0.0.1:1")
    machine.ok("register_storage", name="b", address="127.0.0.1:2")
    machine.ok("register_storage", name="c", address="127.0.0.1:3")
    yield machine
    machine.conn.close()


def create(
    m: Machine, rid: str = "r1", path: str = "g/p.git", storages: tuple[str, ...] = ("a", "b", "c")
) -> Any:
    return m.ok(
        "create_repository",
        repository_id=rid,
        relative_path=path,
        replica_path=f"@cluster/{rid}.git",
        storages=list(storages),
        primary=storages[0],
        replication_factor=len(storages),
        now=1.0,
    )


def write(m: Machine, iid: str, succeeded: list[str], failed: list[str] = [], rid: str = "r1") -> Any:  # noqa: B006
    m.ok(
        "begin_write",
        intent_id=iid,
        repository_id=rid,
        storages=succeeded + failed,
        proxy="p1",
        deadline=50.0,
    )
    return m.ok("finish_write", intent_id=iid, succeeded=succeeded, failed=failed, now=2.0)


def test_create_repository_is_idempotent_and_paths_are_unique(m: Machine) -> None:
    repo = create(m)
    assert [r["generation"] for r in repo["replicas"]] == [-1, -1, -1]
    assert create(m) == repo
    assert m.error("create_repository", repository_id="r2", relative_path="g/p.git", replica_path="x",
                   storages=["a"], primary="a", replication_factor=1, now=1.0) == "exists"  # fmt: skip


def test_finish_write_bumps_writers_and_schedules_the_others_once(m: Machine) -> None:
    create(m)
    assert write(m, "i1", ["a"]) == {"generation": 0, "scheduled": ["b", "c"]}
    assert write(m, "i2", ["a"]) == {"generation": 1, "scheduled": ["b", "c"]}
    assert m.generations("r1") == {"a": 1, "b": -1, "c": -1}
    # Deduplicated: still one waiting job per target, now at the newest generation.
    assert [(t, s, g) for _, t, s, g, _, _ in m.jobs()] == [("b", "ready", 1), ("c", "ready", 1)]
    # Retrying finish_write (same intent) changes nothing and returns the same result.
    assert m.ok("finish_write", intent_id="i2", succeeded=["a"], failed=[], now=3.0)["generation"] == 1
    assert m.generations("r1")["a"] == 1


def test_failed_write_flags_replicas_without_changing_generations(m: Machine) -> None:
    create(m)
    assert write(m, "i1", [], ["a"]) == {"generation": -1, "scheduled": []}
    assert m.generations("r1") == {"a": -1, "b": -1, "c": -1}
    assert m.conn.execute("SELECT storage FROM replicas WHERE needs_verify = 1").fetchall() == [("a",)]


def test_unknown_repository_and_intent_are_refused(m: Machine) -> None:
    assert m.error(
        "begin_write", intent_id="i", repository_id="nope", storages=["a"], proxy="p", deadline=1.0
    ) == ("not_found")
    assert m.error("finish_write", intent_id="nope", succeeded=["a"], failed=[], now=1.0) == "not_found"


def test_set_generation_never_lowers(m: Machine) -> None:
    create(m)
    assert m.ok("set_generation", repository_id="r1", storage="b", generation=5, now=1.0) == 5
    assert m.ok("set_generation", repository_id="r1", storage="b", generation=3, now=1.0) == 5


def test_a_job_is_leased_once_and_completing_it_raises_the_target(m: Machine) -> None:
    create(m)
    write(m, "i1", ["a"])
    leased = m.ok("lease_jobs", owner="w1", now=10.0, lease_seconds=5.0, limit=10)
    assert [j["target"] for j in leased] == ["b", "c"]
    assert m.ok("lease_jobs", owner="w2", now=11.0, lease_seconds=5.0, limit=10) == []
    m.ok("complete_job", job_id=leased[0]["id"], owner="w1", now=12.0)
    assert m.generations("r1")["b"] == 0
    # Wrong owner is refused.
    assert m.error("complete_job", job_id=leased[1]["id"], owner="w2", now=12.0) == "precondition"


def test_an_expired_lease_is_available_again(m: Machine) -> None:
    create(m, storages=("a", "b"))
    write(m, "i1", ["a"])
    (job,) = m.ok("lease_jobs", owner="w1", now=10.0, lease_seconds=5.0, limit=10)
    assert m.ok("lease_jobs", owner="w2", now=14.9, lease_seconds=5.0, limit=10) == []
    (again,) = m.ok("lease_jobs", owner="w2", now=15.0, lease_seconds=5.0, limit=10)
    assert again["id"] == job["id"] and again["lease_owner"] == "w2" and again["attempts"] == 1
    # The old owner lost it.
    assert m.error("complete_job", job_id=job["id"], owner="w1", now=16.0) == "precondition"
    assert m.ok("renew_leases", owner="w1", job_ids=[job["id"]], now=16.0, lease_seconds=5.0) == [job["id"]]
    assert m.ok("renew_leases", owner="w2", job_ids=[job["id"]], now=16.0, lease_seconds=5.0) == []


def test_failures_back_off_then_die(m: Machine) -> None:
    create(m, storages=("a", "b"))
    write(m, "i1", ["a"])
    now = 10.0
    states = []
    for _ in range(3):
        (job,) = m.ok("lease_jobs", owner="w", now=now, lease_seconds=5.0, limit=1, max_attempts=3)
        failed = m.ok(
            "fail_job", job_id=job["id"], owner="w", error="boom", now=now, retry_at=now + 2, max_attempts=3
        )
        states.append(failed["state"])
        assert m.ok("lease_jobs", owner="w", now=now + 1, lease_seconds=5.0, limit=1, max_attempts=3) == []
        now += 2
    assert states == ["failed", "failed", "dead"]
    assert m.ok("lease_jobs", owner="w", now=now + 100, lease_seconds=5.0, limit=1) == []


def test_one_job_in_progress_per_repository_and_target(m: Machine) -> None:
    create(m, storages=("a", "b"))
    write(m, "i1", ["a"])
    (first,) = m.ok("lease_jobs", owner="w", now=10.0, lease_seconds=50.0, limit=5)
    write(m, "i2", ["a"])  # a new job for b while the first is in progress
    assert m.ok("lease_jobs", owner="w", now=11.0, lease_seconds=50.0, limit=5) == []
    m.ok("complete_job", job_id=first["id"], owner="w", now=12.0)
    (second,) = m.ok("lease_jobs", owner="w", now=13.0, lease_seconds=50.0, limit=5)
    assert second["source_generation"] == 1


def test_retried_command_id_applies_once(m: Machine) -> None:
    create(m)
    write(m, "i1", ["a"])
    first = m.apply("lease_jobs", cid="lease-1", owner="w", now=10.0, lease_seconds=5.0, limit=1)
    again = m.apply("lease_jobs", cid="lease-1", owner="w", now=10.0, lease_seconds=5.0, limit=1)
    assert first == again and len(first["ok"]) == 1
    assert [s for _, _, s, _, _, _ in m.jobs()] == ["in_progress", "ready"]


def test_refused_and_malformed_commands_change_nothing_and_never_raise(m: Machine) -> None:
    create(m)
    before = schema.dump_state(m.conn)
    assert m.error("set_primary", repository_id="r1", storage="zzz", now=1.0) == "precondition"
    assert m.error("no_such_op") == "invalid"
    assert m.error("set_generation", repository_id="r1") == "invalid"
    after = schema.dump_state(m.conn)
    # Only the remembered command ids and the applied index moved.
    for table in ("repositories", "replicas", "replication_jobs"):
        assert before[table] == after[table]
    bad = statemachine.apply_payload(m.conn, b"\xff not json", 1000)
    assert bad["error"] == "invalid"


def test_an_entry_is_never_applied_twice(m: Machine) -> None:
    payload = statemachine.encode({"op": "register_storage", "args": {"name": "d", "address": "x"}})
    assert statemachine.apply_payload(m.conn, payload, 100) == {"ok": None}
    assert statemachine.apply_payload(m.conn, payload, 100)["error"] == "internal"
    assert statemachine.applied_index(m.conn) == 100


def test_a_failing_database_is_fatal_and_a_failing_command_is_not(m: Machine) -> None:
    create(m)
    bad = m.apply("set_generation", repository_id="r1")
    assert bad["error"] == "invalid" and not bad.get("fatal")
    m.conn.execute("PRAGMA query_only=ON")  # every write now fails in SQLite itself
    result = m.apply("register_storage", name="d", address="x")
    assert result["error"] == "internal" and result["fatal"] is True
    m.conn.execute("PRAGMA query_only=OFF")
    assert "ok" in m.apply("register_storage", name="d", address="x")


def test_replication_factor_primary_and_dataloss(m: Machine) -> None:
    create(m, storages=("a", "b"))
    write(m, "i1", ["a"])
    repo = m.ok("set_replication_factor", repository_id="r1", assign=["c"], unassign=["b"], now=3.0)
    assert [r["storage"] for r in repo["replicas"]] == ["a", "c"] and repo["replication_factor"] == 2
    assert (
        m.error("set_replication_factor", repository_id="r1", assign=[], unassign=["a"], now=3.0)
        == "precondition"
    )
    changes = m.conn.execute(
        "SELECT change, target FROM replication_jobs WHERE state = 'ready' ORDER BY id"
    ).fetchall()
    assert changes == [("delete_replica", "b"), ("update", "c")]
    assert set_primary(m, "c")["error"] == "precondition"  # outdated
    repo = m.ok("accept_dataloss", repository_id="r1", storage="c", now=5.0)
    assert {r["storage"]: r["generation"] for r in repo["replicas"]} == {"a": 0, "c": 1}
    assert m.ok("set_primary", repository_id="r1", storage="c", now=6.0)["primary"] == "c"


def test_replication_factor_argument_sets_keeps_or_counts(m: Machine) -> None:
    """A logged entry without `replication_factor` stores the replica count (as it did
    when logged); null keeps the stored factor; a number is stored (invalid below 1)."""
    create(m, storages=("a", "b"))
    base = {"repository_id": "r1", "assign": [], "unassign": []}
    assert m.ok("set_replication_factor", **base, now=2.0, replication_factor=3)["replication_factor"] == 3
    kept = m.ok(
        "set_replication_factor", **dict(base, assign=["c"], unassign=["b"]), now=3.0, replication_factor=None
    )
    assert kept["replication_factor"] == 3
    assert m.ok("set_replication_factor", **base, now=4.0)["replication_factor"] == 2
    assert m.error("set_replication_factor", **base, now=5.0, replication_factor=0) == "invalid"


def test_track_repository_adopts_the_primary_copy(m: Machine) -> None:
    track = {"relative_path": "t.git", "replica_path": "t.git", "replication_factor": 2, "now": 1.0}
    repo = m.ok("track_repository", repository_id="t1", storages=["a", "b"], primary="b", **track)
    assert {r["storage"]: r["generation"] for r in repo["replicas"]} == {"a": -1, "b": 0}
    jobs = m.conn.execute("SELECT change, source, target FROM replication_jobs").fetchall()
    assert jobs == [("update", "b", "a")]
    assert m.ok("track_repository", repository_id="t1", storages=["a"], primary="a", **track) == repo
    assert m.error("track_repository", repository_id="t2", storages=["a"], primary="a", **track) == "exists"
    other = dict(track, relative_path="u.git", replica_path="u.git")
    assert m.error("track_repository", repository_id="t3", storages=["a"], primary="c", **other) == "invalid"
    assert m.error("create_repository", repository_id="t4", storages=[], primary="a", **other) == "invalid"


def test_rename_and_remove(m: Machine) -> None:
    create(m)
    create(m, rid="r2", path="other.git")
    assert (
        m.error("rename_repository", repository_id="r1", new_relative_path="other.git", now=2.0) == "exists"
    )
    m.ok("rename_repository", repository_id="r1", new_relative_path="new.git", now=2.0)
    m.ok("remove_repository", repository_id="r1", now=3.0)
    m.ok("remove_repository", repository_id="r1", now=3.0)  # idempotent
    assert m.generations("r1") == {}
    deletes = m.conn.execute(
        "SELECT target FROM replication_jobs WHERE change = 'delete_replica' ORDER BY target"
    )
    assert [t for (t,) in deletes] == ["a", "b", "c"]


def set_primary(m: Machine, storage: str, rid: str = "r1") -> Any:
    """set_primary as the store sends it (the up-to-date check asked for)."""
    return m.apply("set_primary", repository_id=rid, storage=storage, now=3.0, require_up_to_date=True)


def test_set_primary_refuses_an_unassigned_or_outdated_storage_at_apply(m: Machine) -> None:
    create(m)
    write(m, "i1", ["a", "b"])  # a, b at 0; c at -1
    write(m, "i2", ["a"])  # a write lands on the old primary after an elector looked: b is behind
    for storage in ("b", "c", "zzz"):
        assert set_primary(m, storage)["error"] == "precondition", storage
    assert "outdated" in set_primary(m, "b")["message"]
    assert set_primary(m, "a", rid="nope")["error"] == "not_found"
    assert m.conn.execute('SELECT "primary" FROM repositories').fetchone()[0] == "a"
    m.ok("set_generation", repository_id="r1", storage="b", generation=1, now=4.0)
    assert set_primary(m, "b")["ok"]["primary"] == "b"


def test_remove_drops_waiting_jobs_and_in_progress_ones_cannot_complete(m: Machine) -> None:
    create(m)
    write(m, "i1", ["a"])  # update jobs for b and c
    job_b, job_c = m.ok("lease_jobs", owner="w1", now=10.0, lease_seconds=50.0, limit=10)
    m.ok("fail_job", job_id=job_c["id"], owner="w1", error="boom", now=11.0, retry_at=12.0)
    write(m, "i2", ["a"])  # a ready job for b queues behind the running one
    m.ok("remove_repository", repository_id="r1", now=13.0, end_running_jobs=True)
    states = m.conn.execute("SELECT id, change, state, lease_owner, last_error FROM replication_jobs")
    updates = [row for row in states.fetchall() if row[1] == "update"]
    # The failed (c) and ready (b) jobs are gone; the running one ended, owned by no one.
    assert updates == [(job_b["id"], "update", "completed", "", "repository removed")]
    assert m.ok("renew_leases", owner="w1", job_ids=[job_b["id"]], now=14.0, lease_seconds=50.0) == [
        job_b["id"]
    ]
    assert m.error("fail_job", job_id=job_b["id"], owner="w1", error="x", now=14.0, retry_at=15.0) == (
        "precondition"
    )
    # Its worker finishes after the removal: nothing changes and it is told so.
    before = schema.dump_state(m.conn)
    done = m.ok("complete_job", job_id=job_b["id"], owner="w1", now=14.0, removed_is_noop=True)
    assert done["repository_removed"] is True and done["state"] == "completed"
    after = schema.dump_state(m.conn)
    for table in ("repositories", "replicas", "replication_jobs"):
        assert before[table] == after[table]
    # The same id created again: the old job still cannot raise the new replica.
    create(m)
    assert (
        m.error("complete_job", job_id=job_b["id"], owner="w1", now=15.0, removed_is_noop=True)
        == "precondition"
    )
    assert m.generations("r1") == {"a": -1, "b": -1, "c": -1}


def test_complete_job_of_a_removed_repository_held_by_its_owner_ends_it_without_metadata(m: Machine) -> None:
    # A job still in progress for a repository that is gone (e.g. logged before removal
    # ended in-progress jobs): completing it ends the job and touches no replica.
    create(m, storages=("a", "b"))
    write(m, "i1", ["a"])
    (job,) = m.ok("lease_jobs", owner="w1", now=10.0, lease_seconds=50.0, limit=10)
    m.conn.execute("DELETE FROM replicas")
    m.conn.execute("DELETE FROM repositories")
    done = m.ok("complete_job", job_id=job["id"], owner="w1", now=11.0, removed_is_noop=True)
    assert (done["state"], done["last_error"], done["repository_removed"]) == (
        "completed",
        "repository removed",
        True,
    )
    assert m.generations("r1") == {}


def test_entries_logged_without_the_new_arguments_apply_as_they_always_did(m: Machine) -> None:
    # A journal written by older code is replayed at start: its entries keep their meaning.
    create(m)
    write(m, "i1", ["a"])
    assert m.ok("set_primary", repository_id="r1", storage="b", now=3.0)["primary"] == "b"  # outdated
    job_b, _ = m.ok("lease_jobs", owner="w1", now=10.0, lease_seconds=50.0, limit=10)
    m.ok("remove_repository", repository_id="r1", now=11.0)
    (row,) = m.conn.execute("SELECT state, lease_owner FROM replication_jobs WHERE id = ?", (job_b["id"],))
    assert row == ("in_progress", "w1")
    done = m.ok("complete_job", job_id=job_b["id"], owner="w1", now=12.0)
    assert done["state"] == "completed" and "repository_removed" not in done and m.generations("r1") == {}


def test_lease_skips_jobs_whose_storages_are_unhealthy_oldest_first_among_the_rest(m: Machine) -> None:
    create(m)  # primary a
    write(m, "i1", ["a"])  # jobs 1, 2: a -> b, a -> c
    create(m, rid="r2", path="two.git", storages=("b", "c"))
    write(m, "i2", ["b"], rid="r2")  # job 3: b -> c
    create(m, rid="r3", path="three.git", storages=("c", "b"))
    write(m, "i3", ["c"], rid="r3")  # job 4: c -> b
    lease = {"owner": "w", "now": 10.0, "lease_seconds": 5.0}
    # Node a is down: its jobs are skipped, the others leased oldest first.
    (first,) = m.ok("lease_jobs", **lease, limit=1, healthy=["b", "c"])
    assert (first["repository_id"], first["source"], first["target"]) == ("r2", "b", "c")
    (second,) = m.ok("lease_jobs", **lease, limit=5, healthy=["b", "c"])
    assert (second["repository_id"], second["source"], second["target"]) == ("r3", "c", "b")
    # The skipped jobs are untouched: ready, no attempt counted.
    assert [(t, s, n) for _, t, s, _, _, n in m.jobs()][:2] == [("b", "ready", 0), ("c", "ready", 0)]
    # An expired lease whose target is down is not re-leased (and not counted) either.
    (expired,) = m.ok("lease_jobs", owner="w", now=10.0, lease_seconds=5.0, limit=1, healthy=["a", "b"])
    assert expired["target"] == "b"
    later = m.ok("lease_jobs", owner="w2", now=20.0, lease_seconds=5.0, limit=5, healthy=["a", "c"])
    assert [(j["source"], j["target"]) for j in later] == [("a", "c")]
    row = m.conn.execute(
        "SELECT state, attempts, lease_owner FROM replication_jobs WHERE id = ?", (expired["id"],)
    )
    assert row.fetchone() == ("in_progress", 0, "w")
    # Without `healthy` every leasable job is eligible, oldest first, as before.
    every = m.ok("lease_jobs", owner="w3", now=30.0, lease_seconds=5.0, limit=5)
    assert [j["id"] for j in every] == sorted(j["id"] for j in every) and len(every) == 4


async def test_health_votes_query(tmp_path: Any) -> None:
    path = str(tmp_path / "state.db")
    m = Machine()
    m.conn.close()
    m.conn = schema.connect(path)
    schema.create(m.conn)
    m.ok("record_health", proxy="p1", storage="a", healthy=True, now=100.0)
    m.ok("record_health", proxy="p1", storage="b", healthy=False, now=101.0)
    m.ok("record_health", proxy="p2", storage="a", healthy=False, now=102.0)
    m.ok("record_health", proxy="p2", storage="a", healthy=True, now=90.0)  # older: ignored
    async with aiosqlite.connect(path) as db:
        assert await queries.health_votes(db) == {
            "p1": {"a": HealthVote(True, 100.0), "b": HealthVote(False, 101.0)},
            "p2": {"a": HealthVote(False, 102.0)},
        }
    m.conn.close()


async def test_queries_on_applied_state(tmp_path: Any) -> None:
    path = str(tmp_path / "state.db")
    m = Machine()
    m.conn.close()
    m.conn = schema.connect(path)
    schema.create(m.conn)
    for name in "abc":
        m.ok("register_storage", name=name, address=f"127.0.0.1:{ord(name)}")
    create(m)
    write(m, "i1", ["a", "b"])
    m.ok("begin_write", intent_id="open", repository_id="r1", storages=["a"], proxy="p2", deadline=20.0)
    for proxy, healthy in (("p1", "ab"), ("p2", "a"), ("p3", "abc")):
        for storage in "abc":
            m.ok("record_health", proxy=proxy, storage=storage, healthy=storage in healthy, now=100.0)
    async with aiosqlite.connect(path) as db:
        assert [s.name for s in await queries.storages(db)] == ["a", "b", "c"]
        assert await queries.healthy_storages(db, now=105.0, window=10.0) == {"a", "b"}
        # p3's votes are stale: of the two live proxies, only "a" has a majority.
        m.ok("record_health", proxy="p1", storage="a", healthy=True, now=108.0)
        m.ok("record_health", proxy="p2", storage="a", healthy=True, now=108.0)
        assert await queries.healthy_storages(db, now=112.0, window=10.0) == {"a"}
        assert await queries.up_to_date_replicas(db, "r1") == ["a", "b"]
        assert await queries.valid_primaries(db, "r1", now=112.0, window=10.0) == ["a"]
        unavailable, partial = await queries.dataloss(db, now=112.0, window=10.0, include_partial=True)
        assert unavailable == [] and [r.repository_id for r in partial] == ["r1"]
        unavailable, _ = await queries.dataloss(db, now=500.0, window=10.0, include_partial=False)
        assert [r.repository_id for r in unavailable] == ["r1"]
        assert [i.intent_id for i in await queries.expired_intents(db, now=30.0)] == ["open"]
        assert await queries.queue_depth(db) == {("ready", "c"): 1}
        jobs = await queries.list_jobs(db, [JobState.READY], 10)
        assert [(j.target, j.source, j.source_generation) for j in jobs] == [("c", "a", 0)]
        repo = await queries.get_repository(db, "g/p.git")
        assert repo is not None and repo.generation == 0 and repo.up_to_date() == ("a", "b")
    m.conn.close()


def test_same_log_gives_same_database() -> None:
    def run() -> dict[str, list[tuple[object, ...]]]:
        m = Machine()
        m.ok("register_storage", name="a", address="x")
        create(m, storages=("a", "b"))
        write(m, "i1", ["a"])
        m.ok("lease_jobs", owner="w", now=10.0, lease_seconds=5.0, limit=3)
        state = schema.dump_state(m.conn)
        m.conn.close()
        return state

    assert run() == run()


def test_sqlite_connection_is_wal_for_files(tmp_path: Any) -> None:
    conn = schema.connect(str(tmp_path / "x.db"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert isinstance(conn, sqlite3.Connection)
    conn.close()


async def test_open_intents_are_the_repositorys_unfinished_ones_whatever_their_deadline(
    tmp_path: Any,
) -> None:
    path = str(tmp_path / "state.db")
    m = Machine()
    m.conn.close()
    m.conn = schema.connect(path)
    schema.create(m.conn)
    for name in "abc":
        m.ok("register_storage", name=name, address=f"127.0.0.1:{ord(name)}")
    create(m)
    create(m, rid="r2", path="g/q.git")
    write(m, "done", ["a", "b"])
    m.ok("begin_write", intent_id="late", repository_id="r1", storages=["a"], proxy="p", deadline=5.0)
    m.ok("begin_write", intent_id="now", repository_id="r1", storages=["b", "c"], proxy="p", deadline=50.0)
    m.ok("begin_write", intent_id="other", repository_id="r2", storages=["c"], proxy="p", deadline=50.0)
    async with aiosqlite.connect(path) as db:
        assert [(i.intent_id, i.storages) for i in await queries.open_intents(db, "r1")] == [
            ("late", ("a",)),
            ("now", ("b", "c")),
        ]
        assert await queries.open_intents(db, "nope") == []
    m.conn.close()


# --- fencing (DESIGN "Write": invariant 8) ---------------------------------------


def begin(m: Machine, iid: str, storage: str, rid: str = "r1", deadline: float = 50.0) -> Any:
    """begin_write as the store sends it (fencing asked for)."""
    return m.ok(
        "begin_write", intent_id=iid, repository_id=rid, storages=[storage], proxy="p1",
        deadline=deadline, fence=True,
    )  # fmt: skip


def finish(m: Machine, iid: str, storage: str, now: float = 2.0) -> Any:
    return m.ok("finish_write", intent_id=iid, succeeded=[storage], failed=[], now=now)


def test_a_write_that_finishes_after_the_primary_moved_is_fenced(m: Machine) -> None:
    # Issue #9: A in flight on a; a looks dead, b becomes primary and acknowledges B;
    # then a resumes. A must not be acknowledged, and a must be repaired from b.
    create(m)
    begin(m, "A", "a")
    assert set_primary(m, "b")["ok"]["primary"] == "b"
    begin(m, "B", "b")
    assert finish(m, "B", "b") == {"generation": 0, "scheduled": ["a", "c"]}
    result = finish(m, "A", "a")
    assert "primary" in result.get("fenced", ""), result
    assert m.generations("r1") == {"a": -1, "b": 0, "c": -1}
    waiting = m.conn.execute(
        "SELECT source, target, source_generation FROM replication_jobs WHERE state = 'ready' ORDER BY target"
    ).fetchall()
    assert waiting == [("b", "a", 0), ("b", "c", 0)]
    assert m.conn.execute("SELECT storage FROM replicas WHERE needs_verify = 1").fetchall() == [("a",)]


def ready_jobs(m: Machine) -> list[tuple[str, str, int]]:
    rows = m.conn.execute(
        "SELECT source, target, source_generation FROM replication_jobs WHERE state = 'ready' ORDER BY target"
    )
    return rows.fetchall()


def test_a_primary_that_moved_away_and_back_still_fences_the_write(m: Machine) -> None:
    # a -> b -> a with no write on b: a is up to date and primary again when A ends, but
    # a resync may have run in between. A is refused; a holds it alone at generation 0,
    # so b and c (the same content without A) move to 1 and a is repaired from them.
    create(m)
    write(m, "w0", ["a", "b", "c"])
    begin(m, "A", "a")
    set_primary(m, "b")
    set_primary(m, "a")
    assert finish(m, "A", "a")["fenced"] == "primary moved from 'a' to 'b' during the write"
    assert m.generations("r1") == {"a": 0, "b": 1, "c": 1}
    assert ready_jobs(m) == [("b", "a", 1)]


def test_writes_through_two_proxies_on_one_primary_are_both_acknowledged(m: Machine) -> None:
    create(m)
    begin(m, "A", "a")
    begin(m, "B", "a")
    assert "fenced" not in finish(m, "B", "a")
    assert finish(m, "A", "a") == {"generation": 1, "scheduled": ["b", "c"]}


def test_accepting_data_loss_elsewhere_fences_a_write_in_flight(m: Machine) -> None:
    # A in flight on a; data loss accepted on b; the update b -> a mirrors b's refs over
    # a (A's ref update may be gone), a is up to date again: A must not be acknowledged.
    create(m)
    write(m, "w0", ["a", "b"])
    begin(m, "A", "a")
    m.ok("accept_dataloss", repository_id="r1", storage="b", now=3.0, fence=True)
    leased = m.ok("lease_jobs", owner="w", now=4.0, lease_seconds=5.0, limit=5)
    (job,) = [j for j in leased if j["target"] == "a"]
    m.ok("complete_job", job_id=job["id"], owner="w", now=5.0)
    assert m.generations("r1")["a"] == 1
    assert finish(m, "A", "a")["fenced"] == "data loss accepted on 'b' during the write"


def test_accept_dataloss_is_refused_while_a_copy_into_the_storage_runs(m: Machine) -> None:
    create(m)
    write(m, "w0", ["a"])
    leased = m.ok("lease_jobs", owner="w", now=4.0, lease_seconds=5.0, limit=5)
    assert [j["target"] for j in leased] == ["b", "c"]
    assert m.error("accept_dataloss", repository_id="r1", storage="b", now=5.0, fence=True) == "precondition"
    # Its lease expired (the worker died): nothing runs any more.
    assert "ok" in m.apply("accept_dataloss", repository_id="r1", storage="b", now=9.5, fence=True)


def test_replication_overwriting_the_writer_fences_its_write(m: Machine) -> None:
    # The mechanism alone (accept_dataloss as older entries apply it, without fencing):
    # an update into a completes while A runs on a; the mirror may have replaced A's refs.
    create(m)
    write(m, "w0", ["a", "b"])
    m.ok("accept_dataloss", repository_id="r1", storage="b", now=2.0)
    begin(m, "A", "a")
    leased = m.ok("lease_jobs", owner="w", now=3.0, lease_seconds=5.0, limit=5)
    (to_a,) = [j for j in leased if j["target"] == "a"]
    m.ok("complete_job", job_id=to_a["id"], owner="w", now=4.0)
    assert m.generations("r1")["a"] == 1
    assert finish(m, "A", "a")["fenced"] == "replica 'a' was overwritten by replication during the write"


def test_replicas_that_copied_from_a_fenced_writer_are_not_trusted(m: Machine) -> None:
    # W and A run on a; W commits; b and c copy a (each may hold part of A, or not);
    # b becomes primary; A is refused. b and c cannot both move to 2 as if equal: only
    # b (the primary) does, and a and c are repaired from it.
    create(m)
    begin(m, "A", "a")
    begin(m, "W", "a")
    finish(m, "W", "a")
    for job in m.ok("lease_jobs", owner="w", now=3.0, lease_seconds=5.0, limit=5):
        m.ok("complete_job", job_id=job["id"], owner="w", now=4.0)
    assert m.generations("r1") == {"a": 0, "b": 0, "c": 0}
    set_primary(m, "b")
    assert "primary moved" in finish(m, "A", "a")["fenced"]
    assert m.generations("r1") == {"a": 0, "b": 1, "c": 0}
    assert ready_jobs(m) == [("b", "a", 1), ("b", "c", 1)]


def test_a_write_on_an_unassigned_or_removed_replica_is_refused(m: Machine) -> None:
    create(m)
    begin(m, "A", "a")
    set_primary(m, "b")
    m.ok("set_replication_factor", repository_id="r1", assign=[], unassign=["a"], now=3.0)
    assert "fenced" in finish(m, "A", "a")
    assert m.generations("r1") == {"b": -1, "c": -1}
    begin(m, "B", "b")
    m.ok("remove_repository", repository_id="r1", now=4.0, end_running_jobs=True)
    assert finish(m, "B", "b")["fenced"] == "repository removed during the write"


def test_a_slow_job_never_moves_a_generation_past_what_it_copied(m: Machine) -> None:
    create(m, storages=("a", "b"))
    write(m, "w0", ["a"])
    (slow,) = m.ok("lease_jobs", owner="w1", now=10.0, lease_seconds=5.0, limit=5)
    write(m, "w1", ["a"])  # the source moves on while the job copies generation 0
    (row,) = m.conn.execute("SELECT source_generation FROM replication_jobs WHERE id = ?", (slow["id"],))
    assert row == (0,), "a running job must keep the generation it was leased for"
    # Its lease expires; another worker takes it over and completes it, then the next one.
    (again,) = m.ok("lease_jobs", owner="w2", now=16.0, lease_seconds=5.0, limit=5)
    assert again["id"] == slow["id"]
    m.ok("complete_job", job_id=again["id"], owner="w2", now=17.0)
    (newer,) = m.ok("lease_jobs", owner="w2", now=17.0, lease_seconds=5.0, limit=5)
    m.ok("complete_job", job_id=newer["id"], owner="w2", now=18.0)
    assert m.generations("r1") == {"a": 1, "b": 1}
    # The first worker wakes up: its completion is refused and changes nothing.
    assert m.error("complete_job", job_id=slow["id"], owner="w1", now=19.0) == "precondition"
    assert m.generations("r1") == {"a": 1, "b": 1}


def test_a_copy_running_into_a_replica_that_a_refused_write_then_changed_does_not_raise_it(
    m: Machine,
) -> None:
    # Found by the model property: an update into b is copying when a refused write lands
    # on b; completing that copy must not make b up to date with the write in it.
    create(m)
    write(m, "w0", ["a"])  # updates a -> b, a -> c
    begin(m, "B", "b")  # routed to b on a stale view: fenced from the start
    leased = m.ok("lease_jobs", owner="w", now=3.0, lease_seconds=50.0, limit=5)
    (to_b,) = [j for j in leased if j["target"] == "b"]
    assert finish(m, "B", "b")["fenced"] == "storage 'b' is not the primary"
    assert m.error("complete_job", job_id=to_b["id"], owner="w", now=4.0) == "precondition"
    assert m.generations("r1")["b"] == -1
    (again,) = [
        j for j in m.ok("lease_jobs", owner="w", now=5.0, lease_seconds=50.0, limit=5) if j["target"] == "b"
    ]
    assert again["id"] == to_b["id"] and again["attempts"] == 0
    m.ok("complete_job", job_id=again["id"], owner="w", now=6.0)
    assert m.generations("r1")["b"] == 0


def test_a_success_reported_after_the_repair_closed_the_intent_is_fenced(m: Machine) -> None:
    create(m)
    write(m, "w0", ["a", "b", "c"])
    begin(m, "A", "a", deadline=10.0)
    # The leader finds the intent expired, compares checksums (equal), closes it.
    repaired = m.ok("finish_write", intent_id="A", succeeded=[], failed=[], now=11.0, repair=True)
    assert repaired == {"generation": 0, "scheduled": []}
    # The write lands on a afterwards and its proxy reports it.
    late = finish(m, "A", "a", now=12.0)
    assert late["fenced"] == "the write's intent was repaired before the write ended"
    assert m.generations("r1") == {"a": 0, "b": 1, "c": 1}
    assert ready_jobs(m) == [("b", "a", 1)]
    # A second repair of the same intent changes nothing.
    again = m.ok("finish_write", intent_id="A", succeeded=["a"], failed=[], now=13.0, repair=True)
    assert "fenced" not in again and m.generations("r1") == {"a": 0, "b": 1, "c": 1}


def test_the_repair_of_an_intent_renewed_since_it_expired_is_refused(m: Machine) -> None:
    create(m)
    begin(m, "A", "a", deadline=10.0)
    assert m.ok("renew_intent", intent_id="A", deadline=30.0, now=10.5) is True
    assert m.error("finish_write", intent_id="A", succeeded=[], failed=[], now=11.0, repair=True) == (
        "precondition"
    )
    assert m.ok("renew_intent", intent_id="A", deadline=5.0, now=12.0) is True  # never earlier
    assert m.conn.execute("SELECT deadline FROM write_intents").fetchone() == (30.0,)
    assert finish(m, "A", "a") == {"generation": 0, "scheduled": ["b", "c"]}
    assert m.ok("renew_intent", intent_id="A", deadline=50.0, now=13.0) is False  # closed


def test_counters_a_member_rebuilt_equal_those_it_counted(m: Machine) -> None:
    """The chaos run's metadata anomaly: proxy-2, restarted, rebuilt the derived counters
    (schema.create, as after a restored snapshot) and held no `failed | 0` row, where the
    others had counted the job through `failed` and kept one. A counter row whose
    counts are all 0 is removed, so both hold the same rows."""
    create(m, storages=("a", "b"))
    write(m, "i1", ["a"])
    (job,) = m.ok("lease_jobs", owner="w", now=10.0, lease_seconds=5.0, limit=1)
    m.ok("fail_job", job_id=job["id"], owner="w", error="boom", now=10.0, retry_at=11.0)
    (job,) = m.ok("lease_jobs", owner="w", now=12.0, lease_seconds=5.0, limit=1)
    m.ok("complete_job", job_id=job["id"], owner="w", now=12.0)
    m.ok("set_replication_factor", repository_id="r1", assign=[], unassign=["b"], now=13.0)
    counted = schema.dump_state(m.conn)
    rebuilt = sqlite3.connect(":memory:", isolation_level=None)
    m.conn.backup(rebuilt)
    schema.create(rebuilt)
    assert schema.dump_state(rebuilt) == counted
    by_state = m.conn.execute("SELECT state, COUNT(*) FROM replication_jobs GROUP BY state ORDER BY 1")
    assert counted["job_state_counts"] == [tuple(row) for row in by_state]  # no ('failed', 0)
    assert [s for s, replicas, primaries in counted["storage_load"] if not replicas + primaries] == []


def test_create_replaces_the_counter_triggers_an_older_snapshot_brought(m: Machine) -> None:
    """A restored snapshot brings the triggers of the code that wrote it: before zero
    rows were removed, a job's update kept one."""
    m.conn.executescript(
        "DROP TRIGGER jobs_count_update;"
        " CREATE TRIGGER jobs_count_update AFTER UPDATE OF state ON replication_jobs"
        " WHEN OLD.state != NEW.state BEGIN"
        " INSERT INTO job_state_counts (state, jobs) VALUES (OLD.state, -1)"
        " ON CONFLICT (state) DO UPDATE SET jobs = jobs - 1;"
        " INSERT INTO job_state_counts (state, jobs) VALUES (NEW.state, 1)"
        " ON CONFLICT (state) DO UPDATE SET jobs = jobs + 1; END;"
    )
    schema.create(m.conn)
    create(m, storages=("a", "b"))
    write(m, "i1", ["a"])
    (job,) = m.ok("lease_jobs", owner="w", now=10.0, lease_seconds=5.0, limit=1)
    m.ok("complete_job", job_id=job["id"], owner="w", now=12.0)
    assert m.conn.execute("SELECT * FROM job_state_counts").fetchall() == [("completed", 1)]
