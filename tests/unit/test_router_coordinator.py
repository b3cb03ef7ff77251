"""The coordinator's write path and the leader's intent repair, in process.

The store is the real metadata state machine and queries (cluster.metadata) applied
directly to SQLite, without Raft; nodes are replaced by async fakes of the
coordinator's two node-call methods and of the checksum read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import grpc
import pytest

from cluster.background.intent_repair import IntentRepairer
from cluster.metadata import schema, statemachine
from cluster.metadata.api import JobState, RaftStatus, Repository
from cluster.metadata.config import RaftConfig
from cluster.metadata.store import RaftMetadataStore
from cluster.observability.metrics import ProxyMetrics
from cluster.proxy.coordinator import Coordinator, NodeError, Plan, PlanKind
from cluster.proxy.nodes import NodePool
from cluster.proxy.router import MethodInfo, Registry
from common.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from gitraft.v1 import ref_pb2, repository_pb2, server_pb2, shared_pb2, smarthttp_pb2

NOW = 1_000_000.0
REGISTRY = Registry.from_package()
UPDATE_REFS = "/gitraft.v1.RefService/UpdateReferences"
RECEIVE_PACK = "/gitraft.v1.SmartHTTPService/PostReceivePack"
REPO_INFO = "/gitraft.v1.RepositoryService/RepositoryInfo"
LIST_REFS = "/gitraft.v1.RefService/ListRefs"
CREATE = "/gitraft.v1.RepositoryService/CreateRepository"
REMOVE = "/gitraft.v1.RepositoryService/RemoveRepository"
OPTIMIZE = "/gitraft.v1.RepositoryService/OptimizeRepository"
SERVER_INFO = "/gitraft.v1.ServerService/ServerInfo"
LIST_STORAGE = "/gitraft.v1.ServerService/ListStorageRepositories"


class LocalStore(RaftMetadataStore):
    """RaftMetadataStore whose commands apply at once to a local SQLite (no Raft)."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(RaftConfig(data_dir=data_dir, password="x"))
        self.leader = True
        self._writer: sqlite3.Connection | None = None
        self._index = 0

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._writer = schema.connect(str(self.config.db_path))
        schema.create(self._writer)
        self._db = await aiosqlite.connect(str(self.config.db_path))

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
        if self._writer is not None:
            self._writer.close()

    async def _commit(self, payload: bytes, what: str, within: float | None) -> Any:
        assert self._writer is not None
        self._index += 1
        return statemachine.apply_payload(self._writer, payload, self._index)

    def is_leader(self) -> bool:
        return self.leader

    def status(self) -> RaftStatus:
        return RaftStatus("self", "self", "leader", 1, self._index, self._index)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    s = LocalStore(tmp_path / "raft")
    await s.start()
    for name in ("a", "b", "c"):
        await s.register_storage(name, f"127.0.0.1:{name}")
        await s.record_health("p1", name, True, NOW)
    try:
        yield s
    finally:
        await s.stop()


class FakeNodes:
    """Stands in for the coordinator's calls to nodes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.limits: list[float | None] = []
        self.down: set[str] = set()
        self.missing: set[str] = set()  # storages whose replica is gone from disk
        self.connects: list[str] = []
        self.error: NodeError | None = None
        self.checksums = {"a": "1" * 40, "b": "1" * 40, "c": "1" * 40}
        self.chunks = [b"one", b"two", b"three"]

    async def call_unary(
        self, info: MethodInfo, storage: str, request: bytes, context: Any, limit: float | None = None
    ) -> bytes:
        self.calls.append((info.name, storage))
        self.limits.append(limit)
        if storage in self.down:
            raise NodeError(grpc.StatusCode.UNAVAILABLE, f"failed to connect to {storage}")
        if storage in self.missing:
            raise NodeError(grpc.StatusCode.NOT_FOUND, "repository not found: '@cluster/x.git'")
        if self.error is not None:
            raise self.error
        return b""

    async def call_stream(
        self,
        info: MethodInfo,
        storage: str,
        first: bytes,
        rest: Any,
        context: Any,
        limit: float | None = None,
    ) -> AsyncIterator[bytes]:
        self.calls.append((info.name, storage))
        if storage in self.down:
            raise NodeError(grpc.StatusCode.UNAVAILABLE, f"failed to connect to {storage}")
        for chunk in self.chunks:
            yield chunk
        if self.error is not None:
            raise self.error

    async def connect(self, storage: str, within: float = 0.0) -> None:
        self.connects.append(storage)

    async def checksum(self, repo: Repository, storage: str) -> str:
        if storage not in self.checksums:
            raise UnavailableError(f"storage {storage!r} unreachable")
        return self.checksums[storage]


@pytest.fixture
def nodes() -> FakeNodes:
    return FakeNodes()


@pytest.fixture
def coordinator(
    store: LocalStore, nodes: FakeNodes, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Coordinator]:
    scheduled: list[int] = []
    c = Coordinator(
        proxy_name="p1",
        store=store,
        registry=REGISTRY,
        nodes=NodePool("token"),
        metrics=ProxyMetrics(),
        write_intent_timeout=60.0,
        clock=lambda: NOW,
        on_jobs_scheduled=lambda: scheduled.append(1),
    )
    monkeypatch.setattr(c, "call_unary", nodes.call_unary)
    monkeypatch.setattr(c, "call_stream", nodes.call_stream)
    monkeypatch.setattr(c, "checksum", nodes.checksum)
    monkeypatch.setattr(c.nodes, "connect", nodes.connect)
    c.scheduled = scheduled  # type: ignore[attr-defined]
    yield c


async def make_repo(
    store: LocalStore, path: str = "g/r.git", written: tuple[str, ...] = ("a", "b", "c")
) -> str:
    await store.create_repository("r1", path, "@cluster/r1.git", ["a", "b", "c"], "a", 3, NOW)
    for storage in written:
        await store.set_generation("r1", storage, 0, NOW)
    return path


def info(path: str) -> MethodInfo:
    found = REGISTRY.get(path)
    assert found is not None
    return found


def update_request(path: str) -> bytes:
    return ref_pb2.UpdateReferencesRequest(
        repository=shared_pb2.Repository(relative_path=path),
        updates=[ref_pb2.ReferenceUpdate(ref="refs/heads/x", new_oid="2" * 40)],
    ).SerializeToString()


async def generations(store: LocalStore) -> dict[str, int]:
    repo = await store.get_repository_by_id("r1")
    assert repo is not None
    return {r.storage: r.generation for r in repo.replicas}


async def test_mutator_commits_finish_write_before_answering(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    path = await make_repo(store)
    await coordinator.unary(info(UPDATE_REFS), update_request(path), None)
    assert nodes.calls == [("UpdateReferences", "a")]
    assert await generations(store) == {"a": 1, "b": 0, "c": 0}
    jobs = await store.list_jobs([JobState.READY], 10)
    assert {(j.source, j.target, j.source_generation) for j in jobs} == {("a", "b", 1), ("a", "c", 1)}
    assert coordinator.scheduled  # type: ignore[attr-defined]
    assert await store.expired_intents(NOW + 3600) == []


async def test_node_call_ends_before_its_intent_can_be_repaired(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    await make_repo(store)
    repo = await store.get_repository_by_id("r1")
    assert repo is not None
    intent = await coordinator.begin_write(repo, "a", None)
    (open_intent,) = await store.expired_intents(NOW + 3600)
    assert open_intent.intent_id == intent.intent_id
    assert 0 < intent.timeout < open_intent.deadline - NOW <= 60.0
    path = repo.relative_path
    await coordinator.unary(info(UPDATE_REFS), update_request(path), None)
    assert nodes.limits[-1] is not None and nodes.limits[-1] < 60.0


async def test_failed_mutator_that_changed_nothing_keeps_the_generation(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    path = await make_repo(store)
    nodes.error = NodeError(grpc.StatusCode.FAILED_PRECONDITION, "old value mismatch")
    with pytest.raises(NodeError) as raised:
        await coordinator.unary(info(UPDATE_REFS), update_request(path), None)
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert await generations(store) == {"a": 0, "b": 0, "c": 0}
    assert await store.expired_intents(NOW + 3600) == []


async def test_failed_mutator_that_changed_the_primary_bumps_it(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    path = await make_repo(store)
    nodes.error = NodeError(grpc.StatusCode.INTERNAL, "git died half-way")
    nodes.checksums["a"] = "f" * 40
    with pytest.raises(NodeError):
        await coordinator.unary(info(UPDATE_REFS), update_request(path), None)
    assert await generations(store) == {"a": 1, "b": 0, "c": 0}


async def test_streaming_mutator_holds_back_its_last_message_until_finish_write(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    path = await make_repo(store)
    first = smarthttp_pb2.PostReceivePackRequest(repository=shared_pb2.Repository(relative_path=path))

    async def requests() -> AsyncIterator[bytes]:
        yield first.SerializeToString()

    seen: list[tuple[bytes, dict[str, int]]] = []
    async for chunk in coordinator.stream(info(RECEIVE_PACK), requests(), None):
        seen.append((chunk, await generations(store)))
    assert [c for c, _ in seen] == [b"one", b"two", b"three"]
    assert seen[1][1]["a"] == 0, "finish_write ran before the node's stream ended"
    assert seen[2][1]["a"] == 1, "the last message went out before finish_write"


async def test_mutator_refused_when_no_healthy_current_replica(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    path = await make_repo(store, written=("a",))
    await store.record_health("p1", "a", False, NOW)
    with pytest.raises(Exception, match="'a'") as raised:
        await coordinator.unary(info(UPDATE_REFS), update_request(path), None)
    assert getattr(raised.value, "code", None) == grpc.StatusCode.FAILED_PRECONDITION
    assert nodes.calls == []


async def abandoned_intent(store: LocalStore) -> str:
    await make_repo(store)
    await store.begin_write("i1", "r1", ["a"], "p-dead", NOW - 1)
    return "i1"


async def test_leader_closes_an_abandoned_intent_without_change_when_checksums_agree(
    store: LocalStore, coordinator: Coordinator
) -> None:
    await abandoned_intent(store)
    repairer = IntentRepairer(coordinator, clock=lambda: NOW)
    assert await repairer.round() == 1
    assert await generations(store) == {"a": 0, "b": 0, "c": 0}
    assert await store.expired_intents(NOW) == []


async def test_leader_bumps_the_primary_when_an_abandoned_write_changed_it(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    await abandoned_intent(store)
    nodes.checksums["a"] = "e" * 40
    assert await IntentRepairer(coordinator, clock=lambda: NOW).round() == 1
    assert await generations(store) == {"a": 1, "b": 0, "c": 0}
    assert {j.target for j in await store.list_jobs([JobState.READY], 10)} == {"b", "c"}


async def test_an_unverifiable_abandoned_write_counts_as_done(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    await abandoned_intent(store)
    del nodes.checksums["a"]
    assert await IntentRepairer(coordinator, clock=lambda: NOW).round() == 1
    assert (await generations(store))["a"] == 1


async def test_only_the_leader_repairs(store: LocalStore, coordinator: Coordinator) -> None:
    await abandoned_intent(store)
    store.leader = False
    assert await IntentRepairer(coordinator, clock=lambda: NOW).round() == 0
    assert len(await store.expired_intents(NOW)) == 1
    await asyncio.sleep(0)


async def test_mutator_reroutes_when_the_primary_moved_before_its_intent(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = await make_repo(store)
    real_begin = store.begin_write
    moved: list[str] = []

    async def begin_after_failover(*args: Any, **kwargs: Any) -> Any:
        if not moved:  # another proxy's failover commits just before our intent
            moved.append("b")
            await store.set_primary("r1", "b", NOW)
        return await real_begin(*args, **kwargs)

    monkeypatch.setattr(store, "begin_write", begin_after_failover)
    await coordinator.unary(info(UPDATE_REFS), update_request(path), None)
    assert nodes.calls == [("UpdateReferences", "b")]
    assert await generations(store) == {"a": 0, "b": 1, "c": 0}
    assert await store.expired_intents(NOW + 3600) == []


async def test_failed_mutator_with_no_current_secondary_bumps_conservatively(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    path = await make_repo(store, written=("a",))
    nodes.error = NodeError(grpc.StatusCode.FAILED_PRECONDITION, "old value mismatch")
    with pytest.raises(NodeError):
        await coordinator.unary(info(UPDATE_REFS), update_request(path), None)
    assert await generations(store) == {"a": 1, "b": -1, "c": -1}


async def test_failed_mutator_with_unreachable_primary_leaves_it_flagged(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    path = await make_repo(store)
    nodes.error = NodeError(grpc.StatusCode.UNAVAILABLE, "connection refused")
    del nodes.checksums["a"]
    with pytest.raises(NodeError) as raised:
        await coordinator.unary(info(UPDATE_REFS), update_request(path), None)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert await generations(store) == {"a": 0, "b": 0, "c": 0}
    assert await store.expired_intents(NOW + 3600) == []


async def test_one_differing_secondary_is_enough_to_bump(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    path = await make_repo(store)
    nodes.error = NodeError(grpc.StatusCode.INTERNAL, "died")
    nodes.checksums["c"] = "c" * 40  # b copied the half-changed primary, c did not
    with pytest.raises(NodeError):
        await coordinator.unary(info(UPDATE_REFS), update_request(path), None)
    assert (await generations(store))["a"] == 1


async def test_a_malformed_request_is_an_invalid_argument(coordinator: Coordinator) -> None:
    with pytest.raises(InvalidArgumentError, match="malformed"):
        await coordinator.unary(info(UPDATE_REFS), b"\xff\xff\xff", None)
    with pytest.raises(InvalidArgumentError, match="leaves the storage"):
        await coordinator.unary(info(UPDATE_REFS), update_request("../escape.git"), None)


async def test_node_internal_replication_is_not_served(store: LocalStore, coordinator: Coordinator) -> None:
    path = await make_repo(store)
    request = repository_pb2.ReplicateRepositoryRequest(
        repository=shared_pb2.Repository(relative_path=path),
        source=shared_pb2.Repository(relative_path="elsewhere.git"),
    )
    with pytest.raises(InvalidArgumentError, match="node-internal"):
        await coordinator.unary(
            info("/gitraft.v1.RepositoryService/ReplicateRepository"), request.SerializeToString(), None
        )
    assert await generations(store) == {"a": 0, "b": 0, "c": 0}


async def test_export_of_object_files_is_not_served(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    """ExportRepository answers object files as they are on disk, unreachable ones
    included: node-to-node only (node_internal), never through a proxy."""
    path = await make_repo(store)
    request = repository_pb2.ExportRepositoryRequest(
        repository=shared_pb2.Repository(relative_path=path), limit=1
    )
    with pytest.raises(InvalidArgumentError, match="node-internal"):
        await coordinator.unary(
            info("/gitraft.v1.RepositoryService/ExportRepository"), request.SerializeToString(), None
        )
    assert not nodes.calls


async def test_a_read_that_finds_a_replica_unreachable_is_served_by_another(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    path = await make_repo(store)
    nodes.down = {"a", "b"}
    request = repository_pb2.RepositoryInfoRequest(repository=shared_pb2.Repository(relative_path=path))
    await coordinator.unary(info(REPO_INFO), request.SerializeToString(), None)
    assert nodes.calls[-1] == ("RepositoryInfo", "c")
    assert len(nodes.calls) <= 3

    nodes.calls.clear()
    listing = ref_pb2.ListRefsRequest(repository=shared_pb2.Repository(relative_path=path))
    chunks = [c async for c in coordinator.stream(info(LIST_REFS), listing.SerializeToString(), None)]
    assert chunks == [b"one", b"two", b"three"]
    assert nodes.calls[-1] == ("ListRefs", "c")


async def test_a_read_that_finds_a_replica_missing_on_disk_is_served_by_another(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    """The metadata says the replica is current but its node has no repository there
    (deleted by hand, not yet noticed by the reconciler): another replica serves."""
    path = await make_repo(store)
    nodes.missing = {"a", "b"}
    request = repository_pb2.RepositoryInfoRequest(repository=shared_pb2.Repository(relative_path=path))
    await coordinator.unary(info(REPO_INFO), request.SerializeToString(), None)
    assert nodes.calls[-1] == ("RepositoryInfo", "c")

    nodes.missing = {"a", "b", "c"}  # gone everywhere: the client is told
    nodes.calls.clear()
    with pytest.raises(NodeError) as raised:
        await coordinator.unary(info(REPO_INFO), request.SerializeToString(), None)
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert len(nodes.calls) == 3


async def test_reads_give_up_after_a_few_attempts(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    path = await make_repo(store)
    nodes.down = {"a", "b", "c"}
    request = repository_pb2.RepositoryInfoRequest(repository=shared_pb2.Repository(relative_path=path))
    with pytest.raises(NodeError) as raised:
        await coordinator.unary(info(REPO_INFO), request.SerializeToString(), None)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert len(nodes.calls) == 3


async def test_a_write_whose_primary_moved_while_it_ran_is_refused_not_acknowledged(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue #9 through the coordinator: while the node call on a runs (a paused), the
    # elector moves the primary to b and another proxy's write commits there.
    path = await make_repo(store)
    real_call = nodes.call_unary

    async def slow_primary(
        info: MethodInfo, storage: str, request: bytes, context: Any, limit: Any = None
    ) -> bytes:
        answer = await real_call(info, storage, request, context, limit)
        if storage == "a":
            await store.set_primary("r1", "b", NOW)
            await store.begin_write("other", "r1", ["b"], "p2", NOW + 10)
            await store.finish_write("other", ["b"], [], NOW)
        return answer

    monkeypatch.setattr(coordinator, "call_unary", slow_primary)
    with pytest.raises(FailedPreconditionError, match=r"primary moved from 'a' to 'b'.*retry"):
        await coordinator.unary(info(UPDATE_REFS), update_request(path), None)
    assert await generations(store) == {"a": 0, "b": 1, "c": 0}
    jobs = await store.list_jobs([JobState.READY], 10)
    assert {(j.source, j.target, j.source_generation) for j in jobs} == {("b", "a", 1), ("b", "c", 1)}
    assert await store.expired_intents(NOW + 3600) == []


async def test_a_write_reported_after_the_repair_closed_its_intent_is_refused(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    # The proxy was paused past its intent's deadline: the leader compared checksums
    # (equal: nothing landed yet) and closed the intent. Then the write lands on a and
    # the proxy resumes: it must not acknowledge, and a is repaired from b or c.
    await make_repo(store)
    repo = await store.get_repository_by_id("r1")
    assert repo is not None
    intent = await coordinator.begin_write(repo, "a", None)
    repairer = IntentRepairer(coordinator, clock=lambda: NOW + 3600)
    assert await repairer.round() == 1
    with pytest.raises(FailedPreconditionError, match="repaired before the write ended"):
        await coordinator.finish_write(intent.intent_id, "a")
    generations_after = await generations(store)
    assert generations_after["a"] == 0 and generations_after["b"] == generations_after["c"] == 1
    jobs = await store.list_jobs([JobState.READY], 10)
    assert {(j.target, j.source_generation) for j in jobs} == {("a", 1)}


async def test_the_repair_of_a_renewed_intent_is_refused(
    store: LocalStore, nodes: FakeNodes, coordinator: Coordinator
) -> None:
    await make_repo(store)
    repo = await store.get_repository_by_id("r1")
    assert repo is not None
    intent = await coordinator.begin_write(repo, "a", None)
    (seen,) = await store.expired_intents(NOW + 3600)
    assert await store.renew_intent(intent.intent_id, NOW + 7200, NOW + 3600)
    # The leader saw it expired before the renewal; its repair must not close it now.
    with pytest.raises(FailedPreconditionError, match="renewed"):
        await IntentRepairer(coordinator, clock=lambda: NOW + 3601).repair(seen)
    await coordinator.finish_write(intent.intent_id, "a")
    assert await generations(store) == {"a": 1, "b": 0, "c": 0}
    assert not await store.renew_intent(intent.intent_id, NOW + 9000, NOW + 3700)


async def test_a_request_log_replays_only_a_complete_recorded_stream() -> None:
    from cluster.proxy.forwarding import RequestLog

    async def three() -> AsyncIterator[bytes]:
        for item in (b"a", b"bb", b"ccc"):
            yield item

    log = RequestLog(three())
    assert log.replayable  # nothing pulled yet
    first = log.attempt()
    assert await anext(first) == b"a"
    assert not log.replayable  # the stream is still open: never read by two attempts
    assert [i async for i in first] == [b"bb", b"ccc"]
    assert log.replayable
    assert [i async for i in log.attempt()] == [b"a", b"bb", b"ccc"]

    capped = RequestLog(three(), cap=2)
    assert [i async for i in capped.attempt()] == [b"a", b"bb", b"ccc"]
    assert not capped.replayable  # more than the cap was sent: not all of it was kept


async def test_one_plan_per_call_for_every_routing_case(store: LocalStore, coordinator: Coordinator) -> None:
    # Coordinator.plan is the one routing decision both streaming shapes carry out.
    def plan_of(path: str, request: Any) -> Any:
        return coordinator.plan(info(path), request)

    repo = shared_pb2.Repository(relative_path="g/r.git")
    cases = {
        UPDATE_REFS: (ref_pb2.UpdateReferencesRequest(repository=repo), PlanKind.WRITE),
        RECEIVE_PACK: (smarthttp_pb2.PostReceivePackRequest(repository=repo), PlanKind.WRITE),
        LIST_REFS: (ref_pb2.ListRefsRequest(repository=repo), PlanKind.READ),
        CREATE: (repository_pb2.CreateRepositoryRequest(repository=repo), PlanKind.CREATE),
        REMOVE: (repository_pb2.RemoveRepositoryRequest(repository=repo), PlanKind.REMOVE),
        OPTIMIZE: (repository_pb2.OptimizeRepositoryRequest(repository=repo), PlanKind.MAINTAIN),
        SERVER_INFO: (server_pb2.ServerInfoRequest(), PlanKind.LOCAL),
    }
    for path, (request, kind) in cases.items():
        assert await plan_of(path, request) == Plan(kind, path="" if kind is PlanKind.LOCAL else "g/r.git")
    named = server_pb2.ListStorageRepositoriesRequest(storage_name="b")
    assert await plan_of(LIST_STORAGE, named) == Plan(PlanKind.NODE, storage="b")
    with pytest.raises(InvalidArgumentError):
        await plan_of(UPDATE_REFS, ref_pb2.UpdateReferencesRequest(repository=shared_pb2.Repository()))


async def test_a_streaming_maintenance_rpc_is_refused(coordinator: Coordinator) -> None:
    maintenance = dataclasses.replace(info(OPTIMIZE), server_streaming=True)
    request = repository_pb2.OptimizeRepositoryRequest(
        repository=shared_pb2.Repository(relative_path="g/r.git")
    )
    with pytest.raises(InvalidArgumentError, match="streaming maintenance rpc is not supported"):
        _ = [c async for c in coordinator.stream(maintenance, request.SerializeToString(), None)]
