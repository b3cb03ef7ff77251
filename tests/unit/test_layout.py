"""cluster.local.layout: the ports, files and secrets `gitraft dev` and LocalCluster share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.config import load_proxy_config
from cluster.local.layout import ClusterLayout, LayoutError, read_cluster_file, write_private


def test_base_port_gives_a_deterministic_layout(tmp_path: Path) -> None:
    layout = ClusterLayout.create(tmp_path, proxies=3, nodes=3, base_port=20000)
    p1, p2, _ = layout.proxies
    assert (p1.grpc_port, p1.http_port, p1.raft_port, p1.metrics_port) == (20000, 20001, 20002, 20003)
    assert p2.grpc_port == 20004
    assert [n.name for n in layout.nodes] == ["node-a", "node-b", "node-c"]
    assert (layout.nodes[0].grpc_port, layout.nodes[0].metrics_port) == (20012, 20013)
    assert layout.nodes[2].grpc_port == 20020


def test_free_ports_are_distinct(tmp_path: Path) -> None:
    layout = ClusterLayout.create(tmp_path, proxies=5, nodes=5)
    ports = [port for spec in (*layout.proxies, *layout.nodes) for port in spec.ports()]
    assert len(set(ports)) == len(ports)


def test_a_saved_layout_is_reused_with_its_secrets(tmp_path: Path) -> None:
    first, created = ClusterLayout.load_or_create(tmp_path / "d", proxies=3, nodes=2)
    again, created_again = ClusterLayout.load_or_create(tmp_path / "d", proxies=3, nodes=2)
    assert (created, created_again) == (True, False)
    assert again == first
    assert (tmp_path / "d" / "layout.json").stat().st_mode & 0o077 == 0
    assert json.loads((tmp_path / "d" / "layout.json").read_text())["token"] == first.token


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"proxies": 3, "nodes": 2}, "3 proxies and 3 nodes"), ({"base_port": 20000}, "base port None")],
)
def test_a_saved_layout_of_another_shape_is_refused(tmp_path: Path, kwargs: dict, needle: str) -> None:
    ClusterLayout.load_or_create(tmp_path, proxies=3, nodes=3)
    with pytest.raises(LayoutError, match=needle):
        ClusterLayout.load_or_create(tmp_path, **{"proxies": 3, "nodes": 3, **kwargs})


def test_proxy_configs_name_every_node_and_every_other_proxy(tmp_path: Path) -> None:
    layout = ClusterLayout.create(tmp_path, proxies=3, nodes=2, base_port=21000)
    layout.proxy_settings = {"health_interval": 0.2}
    layout.write_configs()
    config = load_proxy_config(layout.proxies[1].config_path)
    assert config.listen_addr == layout.proxies[1].address
    assert config.token == layout.token and config.node_token == layout.node_token
    assert config.replication_factor == 2
    assert config.health_interval == 0.2
    assert [n.address for n in config.nodes] == [n.address for n in layout.nodes]
    assert config.raft["self_addr"] == layout.proxies[1].raft_addr
    assert sorted(config.raft["peers"]) == sorted(p.raft_addr for p in layout.proxies if p.name != "proxy-2")
    assert config.raft["password"] == layout.raft_password
    assert config.peer_names == {p.raft_addr: p.name for p in layout.proxies if p.name != "proxy-2"}
    assert (layout.root / "node-a" / "node.toml").read_text().count(layout.node_token) == 1


def test_cluster_file_round_trip(tmp_path: Path) -> None:
    layout = ClusterLayout.create(tmp_path, proxies=3, nodes=3, base_port=22000)
    with pytest.raises(LayoutError, match="is gitraft dev running"):
        read_cluster_file(tmp_path)
    pids: dict[str, int | None] = {"proxy-1": 10, "node-a": 11}
    write_private(tmp_path / "cluster.json", json.dumps(layout.cluster_info(pids, launcher_pid=9)))
    info = read_cluster_file(tmp_path)
    assert info["proxies"] == ["127.0.0.1:22000", "127.0.0.1:22004", "127.0.0.1:22008"]
    assert info["token"] == layout.token and info["launcher_pid"] == 9
    roles = {p["name"]: (p["role"], p["pid"]) for p in info["processes"]}
    assert roles["proxy-1"] == ("proxy", 10) and roles["node-a"] == ("node", 11)
    assert roles["proxy-2"] == ("proxy", None)
    assert info["clone_url_example"] == f"http://x:{layout.token}@127.0.0.1:22001/demo.git"
