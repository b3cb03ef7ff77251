"""Metadata commands are declared once (`cluster.metadata.commands`): no command can be
half-declared, and the store's typed calls put exactly the wire args logged entries
were written with (op names and arg keys are a contract with existing Raft logs)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from cluster.metadata import commands, statemachine
from cluster.metadata.api import MetadataStore
from cluster.metadata.config import RaftConfig
from cluster.metadata.store import RaftMetadataStore
from cluster.testing import raft_member
from common.errors import FailedPreconditionError
from common.logs import correlation_id

_QUERIES = {
    name
    for name, value in vars(MetadataStore).items()
    if callable(value) and not name.startswith("_") and name not in commands.REGISTRY
}


@pytest.mark.parametrize("op", sorted(commands.REGISTRY))
def test_every_declared_command_is_whole(op: str) -> None:
    declared = commands.REGISTRY[op]
    assert statemachine.HANDLERS[op] is declared.handler
    contract = getattr(MetadataStore, op, None)
    assert contract is not None, f"{op!r} has no api.MetadataStore method"
    assert inspect.iscoroutinefunction(contract) and contract.__doc__, (
        f"{op!r}: an async, documented contract"
    )
    method = vars(RaftMetadataStore).get(op)
    assert method is not None and method.__name__ == op, f"{op!r} has no store method"
    assert method.__doc__ == contract.__doc__
    assert op in raft_member.COMMANDS


def test_every_handler_and_contract_method_is_accounted_for() -> None:
    assert set(statemachine.HANDLERS) == set(commands.REGISTRY) | {"noop"}
    for name in _QUERIES:  # the rest of the contract: queries and lifecycle, by hand
        assert callable(getattr(RaftMetadataStore, name, None)), f"store lacks {name!r}"
    # Every other public coroutine of the store is a declared command or raw submission.
    public = {n for n, v in vars(RaftMetadataStore).items() if inspect.iscoroutinefunction(v) and n[0] != "_"}
    assert public - _QUERIES == set(commands.REGISTRY) | {"submit", "run_command", "wait_ready"}


def test_a_second_declaration_of_an_op_is_refused() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        commands.command("lease_jobs")(lambda conn, args: None)


_RESULTS: dict[str, Any] = {
    "create_repository": {
        "repository_id": "r",
        "relative_path": "a.git",
        "replica_path": "@x",
        "primary": "s1",
        "replication_factor": 3,
        "created_at": 1.0,
        "replicas": [{"storage": "s1", "generation": 0}],
    },
    "begin_write": {
        "intent_id": "i",
        "repository_id": "r",
        "proxy": "p",
        "storages": ["s1"],
        "deadline": 5.0,
    },
    "finish_write": {"generation": 1, "scheduled": ["s2"]},
    "renew_leases": [],
    "set_generation": 4,
    "renew_intent": True,
    "schedule_repairs": ["scheduled"],
    "retry_jobs": [1],
    "prune_jobs": {"completed": 1, "superseded": 0},
    "clear_needs_verify": 1,
    "lease_jobs": [],
    "complete_job": {"id": 1},
    "fail_job": {
        "id": 1,
        "repository_id": "r",
        "change": "update",
        "source": "s1",
        "target": "s2",
        "source_generation": 1,
        "state": "failed",
        "attempts": 1,
        "lease_owner": "",
        "lease_expires_at": 0.0,
        "retry_at": 2.0,
        "last_error": "boom",
        "created_at": 0.0,
        "updated_at": 1.0,
        "params": {},
    },
}
for _op in ("track_repository", "set_primary", "accept_dataloss", "set_replication_factor"):
    _RESULTS[_op] = _RESULTS["create_repository"]

# (method, positional args, keyword args) -> (op, args) as logged before the registry
# (set_replication_factor.replication_factor is new with it: null keeps the factor).
WIRE: list[tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]] = [
    ("register_storage", ("a", "x"), {}, {"address": "x", "name": "a"}),
    (
        "create_repository",
        ("r", "a.git", "@x", ("s1", "s2"), "s1", 3, 1.0),
        {},
        {
            "now": 1.0,
            "primary": "s1",
            "relative_path": "a.git",
            "replica_path": "@x",
            "replication_factor": 3,
            "repository_id": "r",
            "storages": ["s1", "s2"],
        },
    ),
    ("remove_repository", ("r", 1.0), {}, {"end_running_jobs": True, "now": 1.0, "repository_id": "r"}),
    (
        "rename_repository",
        ("r", "b.git", 1.0),
        {},
        {"new_relative_path": "b.git", "now": 1.0, "repository_id": "r"},
    ),
    (
        "begin_write",
        ("i", "r", ["s1"], "p", 5.0),
        {},
        {
            "deadline": 5.0,
            "fence": True,
            "intent_id": "i",
            "proxy": "p",
            "repository_id": "r",
            "storages": ["s1"],
        },
    ),
    (
        "begin_write",
        ("i", "r", ["s1", "s2"], "p", 5.0),
        {},
        {
            "deadline": 5.0,
            "fence": False,
            "intent_id": "i",
            "proxy": "p",
            "repository_id": "r",
            "storages": ["s1", "s2"],
        },
    ),
    ("renew_intent", ("i", 5.0, 1.0), {}, {"deadline": 5.0, "intent_id": "i", "now": 1.0}),
    (
        "finish_write",
        ("i", ["s1"], [], 1.0),
        {},
        {"correlation_id": "cid-1", "failed": [], "intent_id": "i", "now": 1.0, "succeeded": ["s1"]},
    ),
    (
        "finish_write",
        ("i", ["s1"], ["s2"], 1.0),
        {"repair": True},
        {
            "correlation_id": "cid-1",
            "failed": ["s2"],
            "intent_id": "i",
            "now": 1.0,
            "repair": True,
            "succeeded": ["s1"],
        },
    ),
    (
        "set_generation",
        ("r", "s1", 4, 1.0),
        {},
        {"generation": 4, "now": 1.0, "repository_id": "r", "storage": "s1"},
    ),
    (
        "lease_jobs",
        ("o", 1.0, 10.0, 5),
        {},
        {
            "fresh_by_update": True,
            "lease_seconds": 10.0,
            "limit": 5,
            "max_attempts": 5,
            "now": 1.0,
            "owner": "o",
        },
    ),
    (
        "lease_jobs",
        ("o", 1.0, 10.0, 5, set(), 0),
        {},
        {
            "fresh_by_update": True,
            "healthy": [],
            "lease_seconds": 10.0,
            "limit": 5,
            "max_attempts": 5,
            "now": 1.0,
            "owner": "o",
        },
    ),
    (
        "lease_jobs",
        ("o", 1.0, 10.0, 5, {"b", "a"}, 2),
        {},
        {
            "fresh_by_update": True,
            "healthy": ["a", "b"],
            "lease_seconds": 10.0,
            "limit": 5,
            "max_attempts": 5,
            "max_per_target": 2,
            "now": 1.0,
            "owner": "o",
        },
    ),
    (
        "renew_leases",
        ("o", [1, 2], 1.0, 10.0),
        {},
        {"job_ids": [1, 2], "lease_seconds": 10.0, "now": 1.0, "owner": "o"},
    ),
    ("complete_job", (1, "o", 1.0), {}, {"job_id": 1, "now": 1.0, "owner": "o", "removed_is_noop": True}),
    (
        "fail_job",
        (1, "o", "boom", 1.0, 2.0),
        {},
        {"error": "boom", "job_id": 1, "max_attempts": 5, "now": 1.0, "owner": "o", "retry_at": 2.0},
    ),
    (
        "set_replication_factor",
        ("r", ["a"], ["b"], 1.0),
        {},
        {"assign": ["a"], "now": 1.0, "replication_factor": None, "repository_id": "r", "unassign": ["b"]},
    ),
    (
        "set_replication_factor",
        ("r", [], ["b"], 1.0, 2),
        {},
        {"assign": [], "now": 1.0, "replication_factor": 2, "repository_id": "r", "unassign": ["b"]},
    ),
    (
        "set_primary",
        ("r", "s1", 1.0),
        {},
        {"now": 1.0, "repository_id": "r", "require_up_to_date": True, "storage": "s1"},
    ),
    (
        "accept_dataloss",
        ("r", "s1", 1.0),
        {},
        {"fence": True, "now": 1.0, "repository_id": "r", "storage": "s1"},
    ),
    (
        "record_health",
        ("p", "s1", False, 1.0),
        {},
        {"healthy": False, "now": 1.0, "proxy": "p", "storage": "s1"},
    ),
    (
        "track_repository",
        ("r", "a.git", "a.git", ["s1"], "s1", 1, 1.0),
        {},
        {
            "now": 1.0,
            "primary": "s1",
            "relative_path": "a.git",
            "replica_path": "a.git",
            "replication_factor": 1,
            "repository_id": "r",
            "storages": ["s1"],
        },
    ),
    (
        "schedule_repairs",
        ([{"repository_id": "r", "storage": "s", "reset": True, "generation": 1}], 1.0),
        {},
        {"items": [{"generation": 1, "repository_id": "r", "reset": True, "storage": "s"}], "now": 1.0},
    ),
    ("retry_jobs", ([1, 2], False, 1.0), {}, {"all_dead": False, "job_ids": [1, 2], "now": 1.0}),
    ("clear_needs_verify", ([("r", "s")], 1.0), {}, {"now": 1.0, "replicas": [["r", "s"]]}),
    ("prune_jobs", (1.0, 10), {}, {"completed_before": 1.0, "limit": 10}),
]


class _Recording(RaftMetadataStore):
    """The store with `submit` recording each command instead of committing it."""

    def __init__(self) -> None:
        super().__init__(RaftConfig(job_max_attempts=5))
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def submit(
        self, op: str, args: dict[str, Any], within: float | None = None, command_id: str | None = None
    ) -> Any:
        self.sent.append((op, args))
        return _RESULTS.get(op)


def test_the_wire_table_covers_every_command() -> None:
    assert {method for method, *_ in WIRE} == set(commands.REGISTRY)


@pytest.mark.parametrize(("method", "args", "kwargs", "expected"), WIRE, ids=[w[0] for w in WIRE])
async def test_a_store_call_sends_the_args_logged_before(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], expected: dict[str, Any]
) -> None:
    store = _Recording()
    token = correlation_id.set("cid-1")
    try:
        await getattr(store, method)(*args, **kwargs)
    finally:
        correlation_id.reset(token)
    assert store.sent == [(method, expected)]


async def test_results_come_back_as_api_values() -> None:
    store = _Recording()
    repo = await store.accept_dataloss("r", "s1", 1.0)
    assert (repo.repository_id, repo.replicas[0].storage, repo.generation) == ("r", "s1", 0)
    written = await store.finish_write("i", ["s1"], [], 1.0)
    assert (written.generation, written.scheduled, written.fenced) == (1, ("s2",), "")
    assert await store.complete_job(1, "o", 1.0) is True
    assert await store.set_generation("r", "s1", 4, 1.0) == 4
    assert await store.renew_leases("o", [1], 1.0, 10.0) is None


async def test_lost_leases_and_an_empty_clear_are_answered_by_the_declaration() -> None:
    store = _Recording()
    store.submit = _answer(store, [7])  # type: ignore[method-assign]
    with pytest.raises(FailedPreconditionError, match=r"leases lost.*\[7\]"):
        await store.renew_leases("o", [7], 1.0, 10.0)
    quiet = _Recording()
    assert await quiet.clear_needs_verify([], 1.0) == 0
    assert quiet.sent == []  # nothing to clear: no command at all


def _answer(store: _Recording, value: Any) -> Any:
    async def submit(
        op: str, args: dict[str, Any], within: float | None = None, command_id: str | None = None
    ) -> Any:
        store.sent.append((op, args))
        return value

    return submit


async def test_a_store_call_with_wrong_arguments_is_a_type_error() -> None:
    store = _Recording()
    with pytest.raises(TypeError, match="unexpected"):
        await store.register_storage("a", "x", nme="b")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing"):
        await store.register_storage("a")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected"):
        await store.register_storage("a", "x", "y")  # type: ignore[call-arg]
    assert await store.finish_write(intent_id="i", succeeded=[], failed=[], now=1.0, repair=False)
    assert store.sent[-1][1] == {"intent_id": "i", "succeeded": [], "failed": [], "now": 1.0}
