"""A real Prometheus (Debian's package) scrapes a local cluster with the shipped alert
rules: a storage node is SIGKILLed and GitraftNodeDown is seen firing through
Prometheus's HTTP API, for that node only."""

from __future__ import annotations

from pathlib import Path

from cluster.local.ports import free_port
from cluster.local.prometheus import LocalPrometheus
from cluster.testing import LocalCluster


def test_node_down_alert_fires_through_a_real_prometheus(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3) as cluster:
        proxies = [p.metrics_addr for p in cluster.proxies.values()]
        nodes = [n.metrics_addr for n in cluster.nodes.values()]
        assert all(proxies) and all(nodes)
        port = free_port()
        # 2 s: a scrape (which evaluates the state gauges) has 2 s even on a loaded machine
        with LocalPrometheus(
            tmp_path / "prometheus", proxies=proxies, nodes=nodes, port=port, interval=2.0
        ) as prom:
            prom.wait_ready()
            cluster.wait_until(
                lambda: len(prom.query("max by (storage) (gitraft_node_healthy) == 1")) == 3,
                timeout=60,
                what="prometheus sees 3 healthy nodes",
            )
            assert not [a for a in prom.alerts() if a["labels"]["alertname"] == "GitraftNodeDown"]

            cluster.kill("node-b")
            alert = prom.wait_alert("GitraftNodeDown", {"storage": "node-b"}, timeout=120)

            assert alert["labels"]["severity"] == "critical"
            assert "`gitraft status`" in alert["annotations"]["description"]
            down = {
                a["labels"]["storage"] for a in prom.alerts() if a["labels"]["alertname"] == "GitraftNodeDown"
            }
            assert down == {"node-b"}
