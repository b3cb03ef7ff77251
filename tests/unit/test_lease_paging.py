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
