"""A storage node's configuration (TOML, see README "Configuration")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.config import ConfigError, load_config


@dataclass
class NodeConfig:
    """One node process. Every key has a default that suits a local cluster."""

    # Storage name; the cluster knows the node by it.
    name: str = "node-a"
    # host:port of the gRPC server; loopback by default.
    listen_addr: str = "127.0.0.1:9101"
    # Directory of bare repositories (created when missing).
    storage_path: Path = Path(".gitraft/node-a")
    # Required: every RPC but health checks must carry it.
    token: str = ""
    # host:port for Prometheus /metrics; empty = off.
    metrics_addr: str = ""
    log_level: str = "info"
    # Seconds a stopping server lets RPCs in flight finish.
    shutdown_grace: float = 5.0
    # Seconds a ReplicateRepository may take on this node, whatever the caller's deadline
    # (a silent source must not hold it forever).
    replication_timeout: float = 300.0

    def __post_init__(self) -> None:
        if not self.token:
            raise ConfigError("node config: 'token' is required")
        if not self.name:
            raise ConfigError("node config: 'name' must not be empty")
        if self.replication_timeout <= 0:
            raise ConfigError("node config: 'replication_timeout' must be positive")


def load_node_config(path: str | Path) -> NodeConfig:
    """Read a node's TOML file; ConfigError on any problem."""
    return load_config(path, NodeConfig)
