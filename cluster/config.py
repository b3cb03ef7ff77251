"""A routing proxy's configuration (TOML, one file per proxy process).

    name = "proxy-1"
    listen_addr = "127.0.0.1:9001"      # gRPC: the node services + ClusterService
    http_addr = "127.0.0.1:8081"        # git smart HTTP gateway ("" = off)
    metrics_addr = "127.0.0.1:9201"     # Prometheus /metrics ("" = off)
    data_dir = ".gitraft/proxy-1"       # Raft journal, snapshots, SQLite
    token = "..."                       # clients' token (gRPC bearer, HTTP basic password)
    tokens = ["..."]                    # more accepted client tokens (rotation; optional)
    node_token = "..."                  # token this proxy sends to the nodes
    tls_cert = "proxy.pem"              # TLS on the gRPC and HTTP listeners (optional,
    tls_key = "proxy.key"               #   both or neither)
    tls_ca = "ca.pem"                   # CA bundle this proxy trusts as a client
    node_tls = false                    # dial the nodes over TLS
    replication_factor = 3              # replicas of a new repository (fewer if fewer nodes)
    create_on_push = true               # a push to a missing path creates the repository
    health_interval = 0.5               # seconds between health checks of each node
    replication_workers = 8             # replication jobs this proxy runs at once
    write_intent_timeout = 300.0        # an intent open longer is repaired by the leader
    read_first_response_timeout = 10.0  # a read's node silent longer: tried on another replica
    reconcile_interval = 5.0            # seconds between the leader's reconciler rounds
    verify_interval = 86400.0           # each replica's checksum compared about this often
    peer_names = {"127.0.0.1:7002" = "proxy-2", "127.0.0.1:7003" = "proxy-3"}

    [raft]                              # cluster.metadata's RaftConfig keys
                                        # (data_dir defaults to <data_dir>/raft)
    self_addr = "127.0.0.1:7001"
    peers = ["127.0.0.1:7002", "127.0.0.1:7003"]
    password = "..."

    [[nodes]]
    name = "node-a"
    address = "127.0.0.1:9101"

Every key has a default that suits a local cluster; `load_proxy_config` raises
ConfigError naming the file and key for anything it cannot use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.metadata.config import RaftConfig
from common.config import ConfigError, from_dict, load_config, required_tokens
from common.tls import ClientTls, ServerTls


@dataclass
class NodeEntry:
    """A storage node the proxy routes to."""

    name: str
    address: str


@dataclass
class ProxyConfig:
    name: str = "proxy-1"
    listen_addr: str = "127.0.0.1:9001"
    http_addr: str = "127.0.0.1:8081"
    metrics_addr: str = ""
    data_dir: Path = Path(".gitraft/proxy-1")
    # Accepted client tokens: `token` and `tokens` (see common.config.required_tokens);
    # after loading, `tokens` holds them all and `token` the first (the one the proxy's
    # own gateway sends upstream).
    token: str = ""
    tokens: list[str] = field(default_factory=list)
    node_token: str = ""
    # TLS (off by default; see common.tls): `tls_cert` + `tls_key` (PEM) make the gRPC
    # and HTTP listeners serve TLS; `tls_ca` is the CA bundle (PEM, empty = system roots)
    # this proxy verifies servers with: the nodes when `node_tls`, and its own gRPC
    # listener, which its HTTP gateway dials as `tls_server_name` (default: the host
    # of listen_addr, or "localhost" for a wildcard address).
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    node_tls: bool = False
    tls_server_name: str = ""
    replication_factor: int = 3
    create_on_push: bool = True
    log_level: str = "info"
    # Seconds between health checks of each node, and a check's timeout.
    health_interval: float = 0.5
    health_timeout: float = 1.0
    # Consecutive failed checks before this proxy sees a node unhealthy.
    health_failure_threshold: int = 2
    # Seconds between re-submissions of an unchanged health view; keep well under the
    # Raft table's health_window so this proxy counts as live.
    health_refresh: float = 2.0
    # Replication workers in this proxy, and their job lease. 8 (and 8 per target): a
    # 2,000-job backlog of small repositories that hold a commit drained at 103-120
    # jobs/s on a 2-core machine, against 92-109 with 4 in runs interleaved with them
    # (bench/scale_bench.py --drain-only 0 --backlog-commits; README, "Benchmarks"): a
    # copy now costs little git, so more copies in flight share fsck runs and Raft
    # entries. (With the fetch path, 4 beat 8: more only queued for the CPU.)
    replication_workers: int = 8
    lease_seconds: float = 30.0
    # Seconds a write intent may stay open before it counts as abandoned.
    write_intent_timeout: float = 300.0
    # Seconds a read's node may take to start answering before the read is tried on
    # another up-to-date replica (a paused node accepts connections and says nothing).
    read_first_response_timeout: float = 10.0
    # Seconds between the leader's scans for abandoned intents.
    intent_repair_interval: float = 1.0
    # Seconds between the leader's elections of new primaries (cluster.background.elector).
    failover_interval: float = 0.5
    # Replication jobs running at once per target storage, cluster-wide (0 = no bound).
    replication_per_target: int = 8
    # Reconciler (cluster.background.reconciler, Raft leader only): seconds between rounds; repair
    # jobs per target storage a round; repositories whose replicas are checked on disk
    # a round; seconds a replica whose job died waits before it gets fresh work; seconds
    # a storage stays unhealthy before its replicas are re-assigned (0 = never).
    reconcile_interval: float = 5.0
    reconcile_batch: int = 100
    reconcile_exists_batch: int = 20
    reconcile_dead_retry_after: float = 30.0
    reassign_after: float = 0.0
    # Verifier (cluster.background.verifier, leader only): every replica compared with its primary
    # about once per verify_interval seconds, in rounds every verify_tick seconds of at
    # most verify_max_per_round repositories.
    verify_interval: float = 86400.0
    verify_tick: float = 10.0
    verify_max_per_round: int = 20
    # Seconds a starting proxy waits for a Raft leader before giving up (exit 1).
    ready_timeout: float = 120.0
    shutdown_grace: float = 5.0
    # Names of the other proxies by Raft address, for ClusterStatus (optional).
    peer_names: dict[str, str] = field(default_factory=dict)
    # Raft settings: the keys of cluster.metadata's RaftConfig.
    raft: dict[str, Any] = field(default_factory=dict)
    nodes: list[NodeEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.token, self.tokens = required_tokens("proxy config", self.token, self.tokens)
        if not self.node_token:
            raise ConfigError("proxy config: 'node_token' is required")
        if self.replication_factor < 1:
            raise ConfigError(
                f"proxy config: replication_factor must be >= 1, got {self.replication_factor!r}"
            )
        _ = self.server_tls  # validates the pair
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ConfigError(f"proxy config: duplicate node names in {names!r}")

    @property
    def server_tls(self) -> ServerTls:
        return ServerTls(self.tls_cert, self.tls_key)

    @property
    def node_client_tls(self) -> ClientTls | None:
        """How this proxy dials its nodes (None: plain)."""
        return ClientTls(self.tls_ca) if self.node_tls else None

    def self_server_name(self) -> str:
        """The name this proxy's own certificate is checked against by its gateway."""
        if self.tls_server_name:
            return self.tls_server_name
        host = self.listen_addr.rsplit(":", 1)[0].strip("[]")
        return "localhost" if host in ("", "0.0.0.0", "::") else host


def load_proxy_config(path: str | Path) -> ProxyConfig:
    """Read a proxy's TOML file; ConfigError on any problem (the [raft] table included)."""
    config = load_config(path, ProxyConfig)
    raft_config(config)
    config.server_tls.check()
    if config.tls_ca:
        ClientTls(config.tls_ca).check()
    return config


def raft_config(config: ProxyConfig) -> RaftConfig:
    """The `[raft]` table as a RaftConfig; its data_dir defaults to `<data_dir>/raft`."""
    table = {"data_dir": str(Path(config.data_dir) / "raft"), **config.raft}
    return from_dict(RaftConfig, table, where="proxy config: raft")
