"""JSON log lines (bound fields, correlation id) and the bounded data-loss gauge."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from cluster.metadata import queries, schema
from cluster.observability.metrics import ProxyMetrics
from cluster.observability.state_metrics import OTHER, UNAVAILABLE_PATHS, LeaderWatch, StateMetrics
from common.logs import JsonFormatter, bind_fields, correlation_id, unbind_fields
from tests.unit.test_metadata_statemachine import Machine, create, write


def record(msg: str, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("gitraft.test", logging.INFO, __file__, 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


def test_a_log_line_is_one_json_object_with_component_correlation_id_and_bound_fields() -> None:
    formatter = JsonFormatter("proxy")
    token = correlation_id.set("abc123")
    bound = bind_fields(repository="g/r.git", storage="node-a", job_id=7, empty="")
    try:
        line = formatter.format(record("replicated", storage="node-b"))
    finally:
        unbind_fields(bound)
        correlation_id.reset(token)
    assert "\n" not in line
    out = json.loads(line)
    assert out["component"] == "proxy" and out["correlation_id"] == "abc123"
    assert out["repository"] == "g/r.git" and out["job_id"] == 7
    assert out["storage"] == "node-b"  # extra= wins over a bound field
    assert "empty" not in out
    after = json.loads(formatter.format(record("later")))
    assert "repository" not in after and "correlation_id" not in after


def test_bound_fields_stay_in_their_task() -> None:
    formatter = JsonFormatter("proxy")

    async def one(name: str) -> dict[str, Any]:
        bind_fields(repository=name)
        await asyncio.sleep(0)
        return dict(json.loads(formatter.format(record("x"))))

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(one("a.git"), one("b.git")))

    assert [r["repository"] for r in asyncio.run(both())] == ["a.git", "b.git"]


@dataclass
class _Repo:
    relative_path: str


class _Store:
    def __init__(self, unavailable: int) -> None:
        self.unavailable = [_Repo(f"group/r{i:03}.git") for i in range(unavailable)]

    async def dataloss(self, now: float, include_partial: bool) -> tuple[list[_Repo], list[_Repo]]:
        return self.unavailable, []

    async def repository_count(self) -> int:
        return len(self.unavailable)


def gauge(metrics: ProxyMetrics, name: str) -> dict[str, float]:
    return {
        s.labels.get("repository", ""): s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == name
    }


def test_unavailable_paths_are_capped_with_an_other_bucket() -> None:
    metrics = ProxyMetrics()
    state = StateMetrics(_Store(UNAVAILABLE_PATHS + 5), metrics)  # type: ignore[arg-type]
    asyncio.run(state._dataloss(0.0))
    paths = gauge(metrics, "gitraft_repository_unavailable")
    assert len(paths) == UNAVAILABLE_PATHS + 1
    assert paths[OTHER] == 5 and paths["group/r000.git"] == 1
    assert gauge(metrics, "gitraft_repositories_unavailable") == {"": UNAVAILABLE_PATHS + 5}

    state.store = _Store(0)  # type: ignore[assignment]
    asyncio.run(state._dataloss(0.0))
    assert gauge(metrics, "gitraft_repository_unavailable") == {OTHER: 0}


def test_leader_watch_counts_changes_not_the_first_leader() -> None:
    metrics = ProxyMetrics()
    leaders = iter(["", "a:1", "a:1", "", "b:1", "a:1"])
    watch = LeaderWatch(lambda: next(leaders), metrics)
    for _ in range(6):
        watch.tick()
    assert gauge(metrics, "gitraft_raft_leader_changes_total") == {"": 2}


def test_a_writes_correlation_id_travels_into_the_jobs_it_schedules_and_old_entries_apply_as_before(
    tmp_path: Path,
) -> None:
    m = Machine()
    try:
        for name in "abc":
            m.ok("register_storage", name=name, address=f"127.0.0.1:{ord(name)}")
        create(m)
        m.ok("begin_write", intent_id="i1", repository_id="r1", storages=["a"], proxy="p1", deadline=50.0)
        m.ok("finish_write", intent_id="i1", succeeded=["a"], failed=[], now=2.0, correlation_id="cid-1")
        params = [json.loads(p) for (p,) in m.conn.execute("SELECT params FROM replication_jobs ORDER BY id")]
        assert params == [{"correlation_id": "cid-1"}] * 2
        m.conn.execute("DELETE FROM replication_jobs")
        write(m, "i2", ["a"])  # an entry logged without the argument
        params = [json.loads(p) for (p,) in m.conn.execute("SELECT params FROM replication_jobs ORDER BY id")]
        assert params == [{}, {}]
    finally:
        m.conn.close()


async def test_intent_and_job_age_queries(tmp_path: Path) -> None:
    m = Machine()
    m.conn.close()
    m.conn = schema.connect(str(tmp_path / "state.db"))
    schema.create(m.conn)
    for name in "abc":
        m.ok("register_storage", name=name, address=f"127.0.0.1:{ord(name)}")
    create(m)
    write(m, "i1", ["a"])  # jobs for b and c created at now=2.0
    m.ok("begin_write", intent_id="open", repository_id="r1", storages=["a"], proxy="p2", deadline=20.0)
    m.ok("begin_write", intent_id="later", repository_id="r1", storages=["a"], proxy="p2", deadline=40.0)
    async with aiosqlite.connect(str(tmp_path / "state.db")) as db:
        assert await queries.open_intent_summary(db, now=30.0) == (2, 1, 20.0)
        assert await queries.oldest_jobs(db) == {"ready": 2.0}
    m.conn.close()


class _QueueStore:
    """What StateMetrics._queue reads, over a real applied database."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        return await queries.queue_depth(self.db)

    async def storages(self) -> list[Any]:
        return await queries.storages(self.db)


async def test_queue_depth_counts_every_job_by_state_and_target_dead_included_uncapped(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "state.db")
    m = Machine()
    m.conn.close()
    m.conn = schema.connect(path)
    schema.create(m.conn)
    for name in "abc":
        m.ok("register_storage", name=name, address=f"127.0.0.1:{ord(name)}")
    for i in range(520):  # 1,040 update jobs: 520 for b, 520 for c
        create(m, rid=f"r{i}", path=f"g/p{i}.git")
        write(m, f"i{i}", ["a"], rid=f"r{i}")
    m.conn.execute(
        "UPDATE replication_jobs SET state = 'dead' WHERE id IN (SELECT MIN(id) FROM replication_jobs)"
    )
    metrics = ProxyMetrics()
    async with aiosqlite.connect(path) as db:
        await StateMetrics(_QueueStore(db), metrics)._queue(now=10.0)  # type: ignore[arg-type]
    depth = {
        (s.labels["state"], s.labels["target"]): s.value
        for fam in metrics.registry.collect()
        for s in fam.samples
        if s.name == "gitraft_replication_queue_depth"
    }
    assert depth[("ready", "b")] + depth[("ready", "c")] == 1039
    assert depth[("dead", "b")] + depth[("dead", "c")] == 1
    assert depth[("ready", "a")] == 0 and depth[("failed", "c")] == 0 and depth[("in_progress", "b")] == 0
    assert len(depth) == 12  # 4 states x 3 targets, completed omitted
    m.conn.close()
