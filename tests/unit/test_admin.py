"""ClusterService answers from the metadata (LocalStore: the real state machine, no Raft)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cluster.admin import ClusterAdmin
from gitraft.v1 import cluster_pb2
from tests.unit.helpers import local_store
from tests.unit.test_router_coordinator import NOW, LocalStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    async with local_store(tmp_path / "raft") as s:
        yield s


async def test_cluster_status_shows_every_proxys_recorded_vote(store: LocalStore) -> None:
    for proxy, down in (("p1", ""), ("p2", "b"), ("p3", "ab")):
        for storage in "ab":
            await store.record_health(proxy, storage, storage not in down, NOW)
    admin = ClusterAdmin(
        proxy_name="p1",
        store=store,
        local_health=lambda: {"a": False, "c": True},  # used for c only: no vote recorded on it
        clock=lambda: NOW,
    )
    status = await admin.ClusterStatus(cluster_pb2.ClusterStatusRequest(), None)
    nodes = {n.storage: (n.healthy, dict(n.health_by_proxy)) for n in status.nodes}
    assert nodes == {
        "a": (True, {"p1": True, "p2": True, "p3": False}),
        "b": (False, {"p1": True, "p2": False, "p3": False}),
        "c": (False, {"p1": True}),
    }
