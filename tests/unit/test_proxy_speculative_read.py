"""cluster.proxy.reads.speculation_holds: when a read started on the proxy's local state,
before its barrier completed, may serve the client (see its docstring for why)."""

from __future__ import annotations

from cluster.metadata.api import Replica, Repository
from cluster.proxy.reads import speculation_holds

ALL = {"a", "b", "c"}


def repo(generations: dict[str, int], primary: str = "a", repository_id: str = "r1") -> Repository:
    replicas = tuple(Replica(s, g) for s, g in sorted(generations.items()))
    return Repository(repository_id, "g/r.git", f"@cluster/{repository_id}.git", primary, 3, 0.0, replicas)


def test_a_replica_current_before_and_after_the_barrier_serves() -> None:
    state = repo({"a": 4, "b": 4, "c": 4})
    assert speculation_holds(state, state, "b", ALL, frozenset())


def test_a_write_committed_during_the_barrier_drops_the_read() -> None:
    # b read generation 4; a write acknowledged before the read began made it 5 on a.
    before, after = repo({"a": 4, "b": 4, "c": 4}), repo({"a": 5, "b": 4, "c": 4})
    assert not speculation_holds(before, after, "b", ALL, frozenset())
    assert not speculation_holds(before, after, "a", ALL, frozenset())  # a was read at 4


def test_a_replica_that_became_current_only_after_the_call_started_is_dropped() -> None:
    # The local state had c outdated; a stale route could not pick it, and if it did,
    # c may have been read before its replication finished.
    before, after = repo({"a": 5, "b": 5, "c": 4}), repo({"a": 5, "b": 5, "c": 5})
    assert not speculation_holds(before, after, "c", ALL, frozenset())


def test_another_repository_at_the_same_path_is_dropped() -> None:
    before, after = repo({"a": 1, "b": 1}), repo({"a": 1, "b": 1}, repository_id="r2")
    assert not speculation_holds(before, after, "a", ALL, frozenset())


def test_unhealthy_unassigned_or_writing_replicas_are_dropped_as_the_router_would() -> None:
    state = repo({"a": 2, "b": 2, "c": 2})
    assert not speculation_holds(state, state, "b", {"a", "c"}, frozenset())
    assert not speculation_holds(state, repo({"a": 2, "c": 2}), "b", ALL, frozenset())
    # b is under a write intent while others are settled: the router avoids it.
    assert not speculation_holds(state, state, "b", ALL, frozenset({"b"}))
    assert speculation_holds(state, state, "c", ALL, frozenset({"b"}))
    # every candidate is writing: only the primary is the router's choice
    everyone = frozenset(ALL)
    assert speculation_holds(state, state, "a", ALL, everyone)
    assert not speculation_holds(state, state, "b", ALL, everyone)
