from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config import NodeEntry, ProxyConfig, load_proxy_config
from common.config import ConfigError, to_toml


def test_round_trip(tmp_path: Path) -> None:
    cfg = ProxyConfig(
        name="proxy-2",
        token="t",
        node_token="n",
        data_dir=tmp_path / "p",
        raft={"self_addr": "127.0.0.1:7002", "peers": ["127.0.0.1:7001"], "password": "pw"},
        nodes=[NodeEntry("node-a", "127.0.0.1:9101"), NodeEntry("node-b", "127.0.0.1:9102")],
    )
    p = tmp_path / "proxy.toml"
    p.write_text(to_toml(cfg))
    assert load_proxy_config(p) == cfg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('token = "t"\n', "node_token"),
        ('token = "t"\nnode_token = "n"\nreplication_factor = 0\n', "replication_factor"),
        ('token = "t"\nnode_token = "n"\n[[nodes]]\nname = "a"\n', "address"),
        ('token = "t"\nnode_token = "n"\nnodes = "x"\n', "nodes"),
    ],
)
def test_broken_proxy_configs_say_why(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "proxy.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_proxy_config(p)


def test_round_trip_with_peer_names_and_raft_defaults(tmp_path: Path) -> None:
    from cluster.config import raft_config

    cfg = ProxyConfig(
        token="t",
        node_token="n",
        data_dir=tmp_path / "p",
        peer_names={"127.0.0.1:7002": "proxy-2"},
        raft={"self_addr": "127.0.0.1:7001", "peers": ["127.0.0.1:7002"], "password": "pw"},
    )
    p = tmp_path / "proxy.toml"
    p.write_text(to_toml(cfg))
    assert load_proxy_config(p) == cfg
    assert raft_config(cfg).data_dir == tmp_path / "p" / "raft"


def test_bad_raft_table_is_refused_at_load(tmp_path: Path) -> None:
    p = tmp_path / "proxy.toml"
    p.write_text('token = "t"\nnode_token = "n"\n[raft]\nnot_a_key = 1\n')
    with pytest.raises(ConfigError, match="not_a_key"):
        load_proxy_config(p)
