"""TLS settings: both halves of a key pair, unreadable files named, off by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config import ProxyConfig
from common.config import ConfigError
from common.tls import ClientTls, ServerTls
from node.config import NodeConfig, load_node_config


def test_tls_is_off_by_default_and_needs_both_cert_and_key() -> None:
    assert not NodeConfig(token="t").server_tls.enabled
    assert NodeConfig(token="t").peer_tls is None
    proxy = ProxyConfig(token="t", node_token="n")
    assert not proxy.server_tls.enabled and proxy.node_client_tls is None
    with pytest.raises(ConfigError, match="both tls_cert and tls_key"):
        NodeConfig(token="t", tls_cert="cert.pem")
    with pytest.raises(ConfigError, match="both tls_cert and tls_key"):
        ProxyConfig(token="t", node_token="n", tls_key="key.pem")


def test_serving_nodes_dial_peers_over_tls_and_proxies_when_asked() -> None:
    node = NodeConfig(token="t", tls_cert="c", tls_key="k", tls_ca="ca.pem")
    assert node.peer_tls == ClientTls("ca.pem")
    proxy = ProxyConfig(token="t", node_token="n", node_tls=True, tls_ca="ca.pem")
    assert proxy.node_client_tls == ClientTls("ca.pem")
    assert ProxyConfig(token="t", node_token="n", listen_addr="0.0.0.0:1").self_server_name() == "localhost"
    assert (
        ProxyConfig(token="t", node_token="n", listen_addr="git.example:1").self_server_name()
        == "git.example"
    )


def test_unreadable_files_raise_config_error_naming_them(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        ServerTls(missing, missing).grpc_credentials()
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        ServerTls(missing, missing).ssl_context()
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        ClientTls(missing).grpc_credentials()


def test_loading_a_config_checks_its_tls_files(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    missing = tmp_path / "missing.pem"
    config.write_text(f'token = "t"\ntls_cert = "{missing}"\ntls_key = "{missing}"\n')
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        load_node_config(config)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    config.write_text(f'token = "t"\ntls_cert = "{garbage}"\ntls_key = "{garbage}"\n')
    with pytest.raises(ConfigError, match="cannot use certificate"):
        load_node_config(config)
