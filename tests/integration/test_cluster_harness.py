"""The harness itself: a cluster that cannot start leaves no process behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.testing import LocalCluster


def test_a_failed_start_stops_every_process(tmp_path: Path) -> None:
    # A [raft] table the proxies refuse: they exit at once with a config error.
    cluster = LocalCluster(tmp_path, proxies=3, nodes=2, raft_settings={"election_timeout_min": 0.01})
    with pytest.raises(RuntimeError, match="did not serve") as info:
        cluster.start()
    assert "election_timeout_min" in str(info.value)
    assert [name for name, node in cluster.nodes.items() if node.alive()] == []
    assert [name for name, proxy in cluster.proxies.items() if proxy.alive()] == []
