"""Properties of the metadata state machine over random command logs (hypothesis).

- a replica's generation never decreases;
- a job is leased by at most one owner at a time, and at most one job per
  (repository, target) is in progress;
- an expired lease becomes available again;
- the same log applied to two fresh databases - or to one restored from a snapshot
  taken half-way - gives identical contents.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cluster.metadata import schema, statemachine

REPOS = ["r1", "r2"]
STORAGES = ["a", "b", "c"]
OWNERS = ["w1", "w2"]

storage = st.sampled_from(STORAGES)
repo = st.sampled_from(REPOS)
storage_list = st.lists(storage, min_size=0, max_size=3, unique=True)


def _ops() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    def op(name: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        return st.fixed_dictionaries(fields).map(lambda args: (name, args))

    intent = st.sampled_from(["i1", "i2", "i3", "i4"])
    owner = st.sampled_from(OWNERS)
    job = st.integers(1, 6)
    return st.one_of(
        op(
            "create_repository",
            repository_id=repo,
            storages=st.lists(storage, min_size=1, max_size=3, unique=True),
        ),
        op("write", repository_id=repo, succeeded=storage_list, failed=storage_list),
        op("write", repository_id=repo, succeeded=storage_list, failed=st.just([])),
        op("write", repository_id=repo, succeeded=st.just(["a"]), failed=st.just([])),
        op("lease_jobs", owner=owner, lease_seconds=st.sampled_from([1.0, 5.0]), limit=st.integers(1, 4)),
        op("complete_job", job_id=job, owner=owner, removed_is_noop=st.booleans()),
        op("begin_write", intent_id=intent, repository_id=repo, storages=storage_list),
        op(
            "begin_write",
            intent_id=intent,
            repository_id=repo,
            storages=st.lists(storage, max_size=1),
            fence=st.just(True),
        ),
        op("finish_write", intent_id=intent, succeeded=storage_list, failed=storage_list),
        op(
            "finish_write", intent_id=intent, succeeded=storage_list, failed=st.just([]), repair=st.just(True)
        ),
        op("renew_intent", intent_id=intent, extend=st.sampled_from([1.0, 20.0])),
        op("set_generation", repository_id=repo, storage=storage, generation=st.integers(-1, 6)),
        op(
            "lease_jobs",
            owner=owner,
            lease_seconds=st.sampled_from([1.0, 5.0]),
            limit=st.integers(1, 4),
            healthy=storage_list,
        ),
        op("renew_leases", owner=owner, job_ids=st.lists(job, max_size=3), lease_seconds=st.just(5.0)),
        op("complete_job", job_id=job, owner=owner),
        op("fail_job", job_id=job, owner=owner, backoff=st.sampled_from([0.0, 2.0])),
        op("set_replication_factor", repository_id=repo, assign=storage_list, unassign=storage_list),
        op("set_primary", repository_id=repo, storage=storage, require_up_to_date=st.booleans()),
        op("accept_dataloss", repository_id=repo, storage=storage, fence=st.booleans()),
        op("remove_repository", repository_id=repo, end_running_jobs=st.booleans()),
    )


logs = st.lists(st.tuples(_ops(), st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0, 7.0])), min_size=10, max_size=40)


def commands(log: list[tuple[tuple[str, dict[str, Any]], float]]) -> list[dict[str, Any]]:
    """Complete each generated op with the time and ids a proxy would put in it."""
    now = 100.0
    # Every log starts with r1 on all storages, so most generated ops find something to do.
    first = {"repository_id": "r1", "storages": STORAGES, "primary": "a", "replication_factor": 3, "now": now}
    first.update(relative_path="r1.git", replica_path="@cluster/r1.git")
    out: list[dict[str, Any]] = [{"op": "create_repository", "cid": "cmd-first", "args": first}]
    for i, ((name, raw), dt) in enumerate(log):
        now += dt
        args = dict(raw, now=now)
        if name == "create_repository":
            rid = args["repository_id"]
            args.update(
                relative_path=f"{rid}.git",
                replica_path=f"@cluster/{rid}.git",
                primary=args["storages"][0],
                replication_factor=len(args["storages"]),
            )
        elif name == "write":  # a whole mutator: intent, then its outcome
            intent = {"intent_id": f"w{i}", "repository_id": args["repository_id"], "storages": []}
            begin = dict(intent, proxy="p1", deadline=now, now=now)
            out.append({"op": "begin_write", "cid": f"cmd-{i}-begin", "args": begin})
            finish = {
                "intent_id": f"w{i}",
                "succeeded": args["succeeded"],
                "failed": args["failed"],
                "now": now,
            }
            out.append({"op": "finish_write", "cid": f"cmd-{i}", "args": finish})
            continue
        elif name == "begin_write":
            args.update(proxy="p1", deadline=now + 10)
        elif name == "renew_intent":
            args.update(deadline=now + args.pop("extend"))
        elif name == "lease_jobs":
            args.update(max_attempts=3)
        elif name == "fail_job":
            args.update(error="boom", retry_at=now + args.pop("backoff"), max_attempts=3)
        out.append({"op": name, "cid": f"cmd-{i}", "args": args})
    return out


def fresh() -> sqlite3.Connection:
    conn = schema.connect(":memory:")
    schema.create(conn)
    return conn


def apply_all(conn: sqlite3.Connection, cmds: list[dict[str, Any]], first_index: int = 2) -> list[Any]:
    return [
        statemachine.apply_payload(conn, statemachine.encode(c), i)
        for i, c in enumerate(cmds, start=first_index)
    ]


def generations(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    return {(r, s): g for r, s, g in conn.execute("SELECT repository_id, storage, generation FROM replicas")}


def in_progress(conn: sqlite3.Connection, now: float) -> list[tuple[int, str, str, str]]:
    return conn.execute(
        "SELECT id, repository_id, target, lease_owner FROM replication_jobs"
        " WHERE state = 'in_progress' AND lease_expires_at > ?",
        (now,),
    ).fetchall()


# Known-hard interleavings, always tried besides the random ones.
WRITE_A = ("write", {"repository_id": "r1", "succeeded": ["a"], "failed": []})
LOWER = [(("set_generation", {"repository_id": "r1", "storage": "b", "generation": g}), 0.0) for g in (5, 3)]
LEASE_WHILE_HELD = [
    (WRITE_A, 0.0),
    (("lease_jobs", {"owner": "w1", "lease_seconds": 5.0, "limit": 4}), 0.0),
    (WRITE_A, 0.5),
    (("lease_jobs", {"owner": "w2", "lease_seconds": 5.0, "limit": 4}), 0.5),
]


@settings(max_examples=150, deadline=None)
@given(logs)
@example(LOWER)
def test_generations_never_decrease(log: list[Any]) -> None:
    conn = fresh()
    seen: dict[tuple[str, str], int] = {}
    for index, cmd in enumerate(commands(log), start=2):
        statemachine.apply_payload(conn, statemachine.encode(cmd), index)
        current = generations(conn)
        for key, gen in current.items():
            if key in seen:  # a replica that still exists (removal forgets it)
                assert gen >= seen[key], (cmd, key, seen[key], gen)
        seen = current


@settings(max_examples=150, deadline=None)
@given(logs)
@example(LEASE_WHILE_HELD)
def test_a_job_is_leased_by_at_most_one_owner_at_a_time(log: list[Any]) -> None:
    conn = fresh()
    holder: dict[int, tuple[str, float]] = {}  # job id -> (owner, lease expiry) as granted
    for index, cmd in enumerate(commands(log), start=2):
        result = statemachine.apply_payload(conn, statemachine.encode(cmd), index)
        now = cmd["args"]["now"]
        if cmd["op"] == "lease_jobs" and "ok" in result:
            for job in result["ok"]:
                previous = holder.get(job["id"])
                if previous is not None and previous[0] != job["lease_owner"]:
                    assert previous[1] <= now, f"job {job['id']} leased to {job['lease_owner']} while held"
                holder[job["id"]] = (job["lease_owner"], job["lease_expires_at"])
        elif cmd["op"] in ("complete_job", "fail_job") and "ok" in result:
            holder.pop(cmd["args"]["job_id"], None)
        elif cmd["op"] == "renew_leases" and "ok" in result:
            for job_id in cmd["args"]["job_ids"]:
                if job_id not in result["ok"]:
                    holder[job_id] = (cmd["args"]["owner"], now + cmd["args"]["lease_seconds"])
        running = in_progress(conn, now)
        pairs = [(r, t) for _, r, t, _ in running]
        assert len(pairs) == len(set(pairs)), f"two jobs in progress for one target: {running}"


@settings(max_examples=100, deadline=None)
@given(logs)
def test_an_expired_lease_becomes_available_again(log: list[Any]) -> None:
    conn = fresh()
    cmds = commands(log)
    apply_all(conn, cmds)
    later = (cmds[-1]["args"]["now"] if cmds else 100.0) + 1000.0
    waiting = conn.execute(
        "SELECT DISTINCT repository_id, target FROM replication_jobs"
        " WHERE state = 'in_progress' OR state = 'ready' OR (state = 'failed' AND retry_at <= ?)",
        (later,),
    ).fetchall()
    lease = {"owner": "late", "now": later, "lease_seconds": 5.0, "limit": 1000, "max_attempts": 1000}
    result = statemachine.apply(conn, {"op": "lease_jobs", "args": lease}, 10_000)
    assert "ok" in result
    # Every (repository, target) with a waiting or abandoned job is now held by "late".
    assert sorted({(j["repository_id"], j["target"]) for j in result["ok"]}) == sorted(set(waiting))
    assert all(owner == "late" for *_, owner in in_progress(conn, later))


@settings(max_examples=100, deadline=None)
@given(logs, st.integers(0, 40))
def test_same_log_gives_identical_databases_even_through_a_snapshot(log: list[Any], cut: int) -> None:
    cmds = commands(log)
    one, two = fresh(), fresh()
    results_one = apply_all(one, cmds)
    results_two = apply_all(two, cmds)
    assert results_one == results_two
    assert schema.dump_state(one) == schema.dump_state(two)

    # A member restored from a snapshot taken after `cut` entries, then fed the rest.
    cut = min(cut, len(cmds))
    source = fresh()
    apply_all(source, cmds[:cut])
    restored = sqlite3.connect(":memory:", isolation_level=None)  # no pragmas: apply must not need them
    source.backup(restored)
    schema.create(restored)  # as RaftDatabase._restore does (it rebuilds the derived counters)
    apply_all(restored, cmds[cut:], first_index=2 + cut)
    assert schema.dump_state(restored) == schema.dump_state(one)
    # Replaying entries the snapshot already holds changes nothing.
    before = schema.dump_state(restored)
    apply_all(restored, cmds[:cut])
    assert schema.dump_state(restored) == before
    for conn in (one, two, source, restored):
        conn.close()


# --- fencing, against a model of the nodes' contents (DESIGN.md invariants 1, 7, 8) ---
#
# Each storage's content is modelled as the set of writes it executed or copied; a
# replication copy replaces the target's set with the source's (refs are mirrored). The
# proxies, workers and leader are played by hand: writes begin (routed to the primary,
# or to a stale one), execute on their storage at any later moment (also after their
# intent was closed by a repair, when its proxy reports at once: the node call is cut
# off before the deadline, so a write landing after the repair with no proxy left to
# report it is outside the model), and finish; the elector moves the primary;
# workers lease, copy (only while they hold the lease) and complete jobs; the leader
# repairs expired intents by comparing contents as checksums would. After every step:
# - two up-to-date replicas hold the same writes, apart from writes still in flight;
# - every acknowledged write is on every up-to-date replica.

ACTIONS = ("begin", "execute", "late", "finish", "repair", "set_primary", "lease", "copy", "complete", "tick")


class Model:
    def __init__(self) -> None:
        self.conn = fresh()
        self.index = 1
        self.now = 100.0
        self.content: dict[str, frozenset[str]] = {s: frozenset() for s in STORAGES}
        self.intents: dict[str, str] = {}  # intent -> storage it executes on
        self.executed: set[str] = set()
        self.closed: set[str] = set()
        self.acked: set[str] = set()
        self.held: dict[int, tuple[str, float]] = {}  # job id -> (owner, lease expiry)
        self.copied: set[int] = set()
        first = {"repository_id": "r1", "storages": STORAGES, "primary": "a", "replication_factor": 3}
        first.update(relative_path="r1.git", replica_path="@cluster/r1.git")
        self.ok("create_repository", **first)

    def apply(self, op: str, **args: Any) -> Any:
        self.index += 1
        cmd = {"op": op, "cid": f"m{self.index}", "args": dict(args, now=self.now)}
        return statemachine.apply_payload(self.conn, statemachine.encode(cmd), self.index)

    def ok(self, op: str, **args: Any) -> Any:
        result = self.apply(op, **args)
        assert "ok" in result, (op, args, result)
        return result["ok"]

    def gens(self) -> dict[str, int]:
        return {s: g for _, s, g in self.conn.execute("SELECT 'r1', storage, generation FROM replicas")}

    def primary(self) -> str:
        return str(self.conn.execute('SELECT "primary" FROM repositories').fetchone()[0])

    def holds(self, job_id: int, owner: str) -> bool:
        """Whether `owner` still holds the job's lease (what the worker confirms before copying)."""
        row = self.conn.execute(
            "SELECT 1 FROM replication_jobs WHERE id = ? AND state = 'in_progress' AND lease_owner = ?"
            " AND lease_expires_at > ?",
            (job_id, owner, self.now),
        ).fetchone()
        return row is not None

    def job(self, job_id: int) -> tuple[str, str, int]:
        row = self.conn.execute(
            "SELECT source, target, source_generation FROM replication_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return (str(row[0]), str(row[1]), int(row[2]))

    def step(self, action: str, data: st.DataObject) -> None:
        if action == "begin":
            iid = f"w{self.index}"
            storage = self.primary() if data.draw(st.booleans()) else data.draw(storage_st)
            self.ok(
                "begin_write",
                intent_id=iid,
                repository_id="r1",
                storages=[storage],
                proxy="p",
                deadline=self.now + 5,
                fence=True,
            )
            self.intents[iid] = storage
        elif action == "execute":  # the node runs the write while its intent is open
            todo = sorted(set(self.intents) - self.executed - self.closed)
            if todo:
                iid = data.draw(st.sampled_from(todo))
                self.executed.add(iid)
                self.content[self.intents[iid]] |= {iid}
        elif action == "late":  # ... or after the repair closed it; its proxy then reports
            todo = sorted((self.closed - self.executed) & set(self.intents))
            if todo:
                iid = data.draw(st.sampled_from(todo))
                self.executed.add(iid)
                self.content[self.intents[iid]] |= {iid}
                result = self.ok("finish_write", intent_id=iid, succeeded=[self.intents[iid]], failed=[])
                assert result.get("fenced"), "a write reported after its intent was repaired was acknowledged"
        elif action == "finish":
            todo = sorted(self.executed - self.closed)
            if todo:
                iid = data.draw(st.sampled_from(todo))
                result = self.ok("finish_write", intent_id=iid, succeeded=[self.intents[iid]], failed=[])
                self.closed.add(iid)
                if not result.get("fenced"):
                    self.acked.add(iid)
        elif action == "repair":  # the leader, once the deadline passed
            todo = sorted(set(self.intents) - self.closed)
            if todo:
                iid = data.draw(st.sampled_from(todo))
                self.now += 6
                storage, gens = self.intents[iid], self.gens()
                top = max(gens.values())
                others = [s for s, g in gens.items() if g == top and s != storage]
                same = bool(others) and all(self.content[s] == self.content[storage] for s in others)
                succeeded = [] if same else [storage]
                self.ok("finish_write", intent_id=iid, succeeded=succeeded, failed=[], repair=True)
                self.closed.add(iid)
        elif action == "set_primary":
            self.apply(
                "set_primary", repository_id="r1", storage=data.draw(storage_st), require_up_to_date=True
            )
        elif action == "lease":
            owner = data.draw(st.sampled_from(OWNERS))
            for job in self.ok("lease_jobs", owner=owner, lease_seconds=5.0, limit=3, max_attempts=100):
                self.held[job["id"]] = (owner, job["lease_expires_at"])
                self.copied.discard(job["id"])
        elif action == "copy":  # the worker's node call, while it holds the lease, unless obsolete
            todo = sorted(
                j for j, (owner, _) in self.held.items() if self.holds(j, owner) and j not in self.copied
            )
            if todo:
                job_id = data.draw(st.sampled_from(todo))
                source, target, generation = self.job(job_id)
                if self.gens().get(target, generation) < generation:
                    self.content[target] = self.content[source]
                self.copied.add(job_id)
        elif action == "complete":
            todo = sorted(self.copied & set(self.held))
            if todo:
                job_id = data.draw(st.sampled_from(todo))
                self.apply(
                    "complete_job", job_id=job_id, owner=self.held.pop(job_id)[0], removed_is_noop=True
                )
        elif action == "tick":
            self.now += data.draw(st.sampled_from([0.5, 3.0, 6.0]))

    def check(self) -> None:
        gens = self.gens()
        top = max(gens.values())
        current = [s for s, g in gens.items() if g == top]
        in_flight = self.executed - self.closed
        for s in current:
            assert self.acked <= self.content[s], (
                f"acknowledged {sorted(self.acked - self.content[s])} lost on {s}"
            )
            for other in current:
                differ = self.content[s] ^ self.content[other]
                assert differ <= in_flight, f"{s} and {other} at generation {top} differ by {sorted(differ)}"


storage_st = st.sampled_from(STORAGES)


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_up_to_date_replicas_hold_the_same_writes_and_every_acknowledged_one(data: st.DataObject) -> None:
    model = Model()
    for _ in range(data.draw(st.integers(5, 60))):
        model.step(data.draw(st.sampled_from(ACTIONS)), data)
        model.check()
