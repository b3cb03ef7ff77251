"""Placement of new repositories: id-derived paths, least-loaded healthy storages."""

from __future__ import annotations

import pytest

from cluster.metadata.api import Replica, Repository
from cluster.proxy.placement import counts, new_repository_id, place, replica_path
from common.errors import UnavailableError
from common.paths import validate_relative_path


def test_replica_path_derives_from_the_id() -> None:
    rid = new_repository_id()
    path = replica_path(rid)
    assert path == f"@cluster/{rid[:2]}/{rid[2:4]}/{rid}.git"
    assert validate_relative_path(path) == path
    assert new_repository_id() != rid


def test_places_on_the_least_loaded_healthy_storages() -> None:
    p = place(["a", "b", "c", "d"], {"a", "b", "c", "d"}, {"a": 5, "b": 1, "c": 0, "d": 2}, {}, 3)
    assert set(p.storages) == {"b", "c", "d"}
    assert p.storages[0] == p.primary


def test_fewer_storages_than_the_factor_uses_all() -> None:
    assert set(place(["a", "b"], {"a", "b"}, {}, {}, 3).storages) == {"a", "b"}


def test_unhealthy_storages_fill_up_last_and_are_never_primary() -> None:
    p = place(["a", "b", "c"], {"c"}, {"c": 9}, {"c": 9}, 2)
    assert p.primary == "c"
    assert p.storages == ("c", "a")


def test_primary_is_the_one_leading_fewest() -> None:
    p = place(["a", "b", "c"], {"a", "b", "c"}, {}, {"a": 3, "b": 1, "c": 2}, 3)
    assert p.primary == "b"


def test_no_healthy_storage_is_unavailable() -> None:
    with pytest.raises(UnavailableError, match="no healthy storage"):
        place(["a"], set(), {}, {}, 1)


def test_counts() -> None:
    repos = [
        Repository("1", "x", "p", "a", 2, 0.0, (Replica("a", 0), Replica("b", 0))),
        Repository("2", "y", "q", "b", 2, 0.0, (Replica("b", 0),)),
    ]
    assert counts(repos) == ({"a": 1, "b": 2}, {"a": 1, "b": 1})
