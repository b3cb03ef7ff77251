"""A starting proxy joins the cluster (a Raft barrier, then its nodes recorded in Raft)
even when the leader is lost between the two: both are retried until ready_timeout."""

from __future__ import annotations

from pathlib import Path

from cluster.config import NodeEntry, ProxyConfig
from cluster.proxy.server import ProxyServer
from common.errors import UnavailableError
from tests.unit.test_router_coordinator import LocalStore


class LosesItsLeaderOnce(LocalStore):
    """The first register_storage fails as a command does when the leader is lost."""

    failures = 1

    async def register_storage(self, name: str, address: str) -> None:
        if self.failures:
            self.failures -= 1
            raise UnavailableError("no quorum: 'register_storage' not committed (last: missing_leader)")
        await super().register_storage(name, address)


async def test_a_leader_lost_after_the_barrier_does_not_stop_the_start(tmp_path: Path) -> None:
    store = LosesItsLeaderOnce(tmp_path)
    await store.start()
    try:
        config = ProxyConfig(
            name="p1",
            token="t",
            node_token="n",
            data_dir=tmp_path / "p1",
            nodes=[NodeEntry("node-a", "127.0.0.1:1")],
            ready_timeout=30.0,
        )
        proxy = ProxyServer(config, store=store)
        await proxy._wait_ready()
        assert store.failures == 0
        assert [(s.name, s.address) for s in await store.storages()] == [("node-a", "127.0.0.1:1")]
    finally:
        await store.stop()
