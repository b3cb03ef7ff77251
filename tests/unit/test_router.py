"""The routing registry comes from the descriptors, and route choice is pure."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.metadata.api import Replica, Repository
from cluster.proxy.router import (
    LOCAL_SERVICES,
    OpType,
    Registry,
    Scope,
    all_services,
    route_accessor,
    route_maintenance,
    route_mutator,
    route_storage,
)
from common.errors import FailedPreconditionError, NotFoundError, UnavailableError

REGISTRY = Registry.from_package()


def repo(primary: str = "a", **generations: int) -> Repository:
    replicas = tuple(Replica(s, g) for s, g in sorted(generations.items()))
    return Repository("id1", "group/p.git", "@cluster/id/id1.git", primary, 3, 0.0, replicas)


@pytest.mark.parametrize("method", [m for s in all_services() for m in s.methods], ids=lambda m: m.full_name)
def test_every_rpc_resolves_to_a_route(method: object) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"  # type: ignore[attr-defined]
    info = REGISTRY.get(path)
    assert info is not None, path
    assert info.local == (info.service in LOCAL_SERVICES)
    if not info.local and info.scope is Scope.REPOSITORY:
        assert info.target_field
        field: Any = info.request_class.DESCRIPTOR.fields_by_name[info.target_field]
        assert field.message_type.full_name == "gitraft.v1.Repository"
    if info.scope is Scope.STORAGE:
        assert info.storage_field


def test_registry_knows_the_annotations() -> None:
    create = REGISTRY.get("/gitraft.v1.RepositoryService/CreateRepository")
    assert create is not None and create.op is OpType.MUTATOR and create.scope is Scope.REPOSITORY
    post = REGISTRY.get("/gitraft.v1.SmartHTTPService/PostReceivePack")
    assert post is not None and post.client_streaming and post.server_streaming
    optimize = REGISTRY.get("/gitraft.v1.RepositoryService/OptimizeRepository")
    assert optimize is not None and optimize.op is OpType.MAINTENANCE
    listing = REGISTRY.get("/gitraft.v1.ServerService/ListStorageRepositories")
    assert listing is not None and listing.scope is Scope.STORAGE and listing.storage_field == "storage_name"
    status = REGISTRY.get("/gitraft.v1.ClusterService/ClusterStatus")
    assert status is not None and status.local
    assert REGISTRY.get("/gitraft.v1.Nope/Nope") is None
    assert {m.service for m in REGISTRY.forwarded()}.isdisjoint(LOCAL_SERVICES)


def test_mutator_goes_to_a_healthy_up_to_date_primary() -> None:
    assert route_mutator(repo("a", a=3, b=3, c=2), {"a", "b", "c"}).primary == "a"


def test_mutator_with_unhealthy_primary_is_unavailable_while_a_replica_is_current() -> None:
    with pytest.raises(UnavailableError, match=r"'a'.*unhealthy"):
        route_mutator(repo("a", a=3, b=3), {"b"})


def test_mutator_with_outdated_primary_is_unavailable() -> None:
    with pytest.raises(UnavailableError, match="outdated"):
        route_mutator(repo("a", a=2, b=3), {"a", "b"})


def test_no_healthy_latest_replica_is_data_loss_pending() -> None:
    with pytest.raises(FailedPreconditionError, match="'a'"):
        route_mutator(repo("a", a=3, b=2, c=2), {"b", "c"})
    with pytest.raises(FailedPreconditionError, match="data loss pending"):
        route_accessor(repo("a", a=3, b=2, c=2), {"b", "c"})


def test_accessor_never_reads_an_outdated_or_unhealthy_replica() -> None:
    r = repo("a", a=5, b=5, c=4, d=5)
    seen: list[list[str]] = []

    def choose(candidates: object) -> str:
        seen.append(list(candidates))  # type: ignore[call-overload]
        return seen[-1][-1]

    route = route_accessor(r, {"a", "b", "c"}, choose)
    assert seen == [["a", "b"]]
    assert route.storage == "b"


def test_accessor_avoids_a_replica_under_an_open_write_intent() -> None:
    r = repo("a", a=5, b=5, c=5)
    seen: list[list[str]] = []

    def choose(candidates: object) -> str:
        seen.append(list(candidates))  # type: ignore[call-overload]
        return seen[-1][0]

    assert route_accessor(r, {"a", "b", "c"}, choose, writing={"a"}).storage == "b"
    assert seen == [["b", "c"]]
    # Every candidate is being written: the primary, the one consistent choice.
    assert route_accessor(r, {"a", "b"}, choose, writing={"a", "b"}).storage == "a"
    assert route_accessor(r, {"b", "c"}, choose, writing={"a", "b"}).storage == "c"


def test_accessor_spreads_reads() -> None:
    r = repo("a", a=1, b=1, c=1)
    assert {route_accessor(r, {"a", "b", "c"}).storage for _ in range(200)} == {"a", "b", "c"}


def test_maintenance_goes_to_every_healthy_replica_with_data() -> None:
    r = repo("a", a=2, b=1, c=-1, d=2)
    assert route_maintenance(r, {"a", "b", "c"}).storages == ("a", "b")
    with pytest.raises(UnavailableError):
        route_maintenance(r, set())


def test_storage_route_names_a_known_storage() -> None:
    assert route_storage("a", ["a", "b"]).storage == "a"
    with pytest.raises(NotFoundError, match="'z'"):
        route_storage("z", ["a"])


def test_rpcs_naming_a_second_repository_are_marked() -> None:
    replicate = REGISTRY.get("/gitraft.v1.RepositoryService/ReplicateRepository")
    assert replicate is not None and replicate.additional_field == "source"
    assert [m.name for m in REGISTRY.methods() if m.additional_field] == ["ReplicateRepository"]
