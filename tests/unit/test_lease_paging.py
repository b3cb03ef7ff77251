"""`lease_jobs` reads its candidates a page at a time (`jobs.page_size`); the page size
must never change what a lease takes, or members of one cluster that apply the same
entry with different sizes (a version with another size) would diverge. Random queue
states: each lease applied twice from the same state, with the production pages and
with one page holding everything, must lease the same jobs in the same order."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import pytest

from cluster.metadata import commands, jobs, schema, statemachine
from tests.unit.test_lease_fairness import Machine

STORAGES = ["a", "b", "c", "d"]


def copy_of(conn: sqlite3.Connection) -> sqlite3.Connection:
    other = schema.connect(":memory:")
    conn.backup(other)
    return other


def random_state(rng: random.Random) -> tuple[Machine, float]:
    """Repositories written at various times, some jobs leased (and some of those
    failed or left to expire), jobs merged into waiting ones."""
    s = Machine()
    for i, name in enumerate(STORAGES):
        s.ok("register_storage", name=name, address=f"127.0.0.1:{i + 1}")
    now = 1000.0
    for i in range(rng.randint(5, 60)):
        storages = rng.sample(STORAGES, rng.randint(2, 4))
        rid = f"r{i:03}"
        s.ok(
            "create_repository",
            repository_id=rid,
            relative_path=f"{rid}.git",
            replica_path=f"@cluster/{rid}.git",
            storages=storages,
            primary=storages[0],
            replication_factor=len(storages),
            now=now,
        )
        for w in range(rng.randint(1, 3)):
            s.ok("begin_write", intent_id=f"{rid}-{w}", repository_id=rid, storages=[storages[0]],
                    proxy="p", deadline=now + 60)  # fmt: skip
            s.ok("finish_write", intent_id=f"{rid}-{w}", succeeded=[storages[0]], failed=[], now=now)
            now += rng.choice([0.0, 0.3, 2.0, 7.0])
        if rng.random() < 0.7:
            leased = s.ok("lease_jobs", owner=rng.choice(["w1", "w2"]), now=now, lease_seconds=5.0,
                             limit=rng.randint(1, 6), healthy=rng.sample(STORAGES, rng.randint(2, 4)),
                             **commands.REGISTRY["lease_jobs"].constants)  # fmt: skip
            for job in leased:
                if rng.random() < 0.6:
                    s.ok("fail_job", job_id=job["id"], owner=job["lease_owner"], error="x", now=now,
                            retry_at=now + rng.choice([0.0, 3.0, 30.0]), max_attempts=3)  # fmt: skip
    return s, now + rng.choice([0.0, 1.0, 6.0, 15.0])


def lease(conn: sqlite3.Connection, now: float, limit: int, healthy: list[str], per_target: int) -> Any:
    args: dict[str, Any] = {"owner": "w3", "now": now, "lease_seconds": 5.0, "limit": limit,
                            "healthy": healthy, **commands.REGISTRY["lease_jobs"].constants}  # fmt: skip
    if per_target:
        args["max_per_target"] = per_target
    command = {"op": "lease_jobs", "args": args, "cid": "final"}
    return statemachine.apply_payload(conn, statemachine.encode(command), 10**6)


@pytest.mark.parametrize("seed", range(100))
def test_the_page_size_never_changes_what_a_lease_takes(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    state, now = random_state(rng)
    for _ in range(4):
        limit = rng.choice([1, 1, 2, 4, 8, 16])
        healthy = sorted(rng.sample(STORAGES, rng.randint(1, 4)))
        per_target = rng.choice([0, 0, 1, 2, 3])
        at = now + rng.choice([0.0, 1.0])  # odd and even seconds: with and without fresh jobs first
        paged = lease(copy_of(state.conn), at, limit, healthy, per_target)
        with monkeypatch.context() as patched:
            patched.setattr(jobs, "page_size", lambda _limit: 10**6)
            whole = lease(copy_of(state.conn), at, limit, healthy, per_target)
        assert "ok" in paged, paged
        assert [j["id"] for j in paged["ok"]] == [j["id"] for j in whole["ok"]]
    state.conn.close()


def test_the_random_states_lease_something() -> None:
    # The comparison above means little if the leases were empty: most take jobs.
    taken = 0
    for seed in range(100):
        rng = random.Random(seed)
        state, now = random_state(rng)
        taken += bool(lease(copy_of(state.conn), now, 4, STORAGES, 0)["ok"])
        state.conn.close()
    assert taken >= 75


def reference_fresh(conn: sqlite3.Connection, now: float, healthy: list[str] | None) -> list[Any]:
    """`jobs._fresh` by its definition: the fresh among the newest LEASE_PAGE ready jobs."""
    extra, params = jobs._health_filter(healthy)
    return conn.execute(
        "SELECT id, repository_id, change, source, target, state, attempts FROM ("
        "SELECT id, repository_id, change, source, target, state, attempts, updated_at AS at"
        f" FROM replication_jobs WHERE state = ?{extra} ORDER BY id DESC LIMIT ?"
        ") WHERE at >= ? ORDER BY id",
        ("ready", *params, jobs.LEASE_PAGE, now - jobs.FRESH_SECONDS),
    ).fetchall()


def rewritten_state(rng: random.Random) -> tuple[Machine, float]:
    """`random_state`, then some of the older repositories written again just before
    `now`: their waiting jobs, low ids, become fresh behind newer jobs that are not."""
    s, now = random_state(rng)
    rids = [r for (r,) in s.conn.execute("SELECT repository_id FROM repositories ORDER BY repository_id")]
    for rid in rng.sample(rids[: max(1, len(rids) // 2)], rng.randint(1, 3)):
        (primary,) = s.conn.execute(
            'SELECT "primary" FROM repositories WHERE repository_id = ?', (rid,)
        ).fetchone()
        s.ok("begin_write", intent_id=f"{rid}-again", repository_id=rid, storages=[primary], proxy="p",
             deadline=now + 60)  # fmt: skip
        s.ok("finish_write", intent_id=f"{rid}-again", succeeded=[primary], failed=[], now=now - 1.0)
    return s, now


@pytest.mark.parametrize("seed", range(100))
def test_fresh_jobs_read_through_their_time_index_are_those_of_the_newest_page(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    state, now = rewritten_state(rng)
    for page in (1, 2, 3, 5, 8, 256):
        monkeypatch.setattr(jobs, "LEASE_PAGE", page)
        for at in (now - 20.0, now - 6.0, now, now + 4.0, now + 11.0):
            for healthy in (None, STORAGES, sorted(rng.sample(STORAGES, rng.randint(1, 3)))):
                assert jobs._fresh(state.conn, at, healthy) == reference_fresh(state.conn, at, healthy)
    state.conn.close()


def test_the_random_states_hold_fresh_jobs_some_beyond_a_small_page(monkeypatch: pytest.MonkeyPatch) -> None:
    # The comparison above means little if the answers were empty, or never cut by the page.
    # "Cut by the page" counted where _fresh takes its index path: no more fresh jobs
    # than the page holds.
    fresh = cut = 0
    for seed in range(100):
        state, now = rewritten_state(random.Random(seed))
        whole = reference_fresh(state.conn, now, None)
        fresh += bool(whole)
        for page in (2, 3, 5, 8):
            monkeypatch.setattr(jobs, "LEASE_PAGE", page)
            cut += len(reference_fresh(state.conn, now, None)) < len(whole) <= page
        monkeypatch.setattr(jobs, "LEASE_PAGE", 256)
        state.conn.close()
    assert fresh >= 50 and cut >= 10
