"""A storage node's configuration (TOML, see README "Configuration")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pool

from common.config import ConfigError, load_config, required_tokens
from common.limiter import ConcurrencyLimit
from common.tls import ClientTls, ServerTls
from gitraft.v1 import commit_pb2, ref_pb2, repository_pb2, server_pb2, smarthttp_pb2  # noqa: F401 (descriptors)

_SMART_HTTP = "/gitraft.v1.SmartHTTPService/"
_REPOSITORY = "/gitraft.v1.RepositoryService/"

# What a node limits unless its `[[concurrency]]` tables say otherwise (README,
# "Configuration reference"): sized for a 2-core node. Each git pack process is one
# child; a clone's pack-objects can use a core by itself.
DEFAULT_CONCURRENCY = (
    ConcurrencyLimit(_SMART_HTTP + "PostUploadPack", 16, 8, 32, 10.0),
    ConcurrencyLimit(_REPOSITORY + "UploadPackSession", 16, 8, 32, 10.0),
    ConcurrencyLimit(_SMART_HTTP + "PostReceivePack", 16, 8, 32, 30.0),
    ConcurrencyLimit(_SMART_HTTP + "InfoRefsUploadPack", 32, 16, 64, 10.0),
    ConcurrencyLimit(_SMART_HTTP + "InfoRefsReceivePack", 32, 16, 64, 10.0),
    ConcurrencyLimit(_REPOSITORY + "ReplicateRepository", 8, 0, 64, 30.0),
    # Each holds up to replication_copy_limit (at most 8 MiB) of object files in memory.
    ConcurrencyLimit(_REPOSITORY + "ExportRepository", 16, 0, 64, 30.0),
    ConcurrencyLimit(_REPOSITORY + "OptimizeRepository", 2, 0, 16, 60.0),
)


# The largest replication_copy_limit (the whole copy is one gRPC message).
MAX_REPLICATION_COPY_LIMIT = 8 * 1024 * 1024
# The shortest temporaries_max_age accepted.
MIN_TEMPORARIES_AGE = 60.0


@dataclass
class NodeConfig:
    """One node process. Every key has a default that suits a local cluster."""

    # Storage name; the cluster knows the node by it.
    name: str = "node-a"
    # host:port of the gRPC server; loopback by default.
    listen_addr: str = "127.0.0.1:9101"
    # Directory of bare repositories (created when missing).
    storage_path: Path = Path(".gitraft/node-a")
    # Required: every RPC but health checks must carry one of `token` and `tokens`
    # (several during a rotation, see common.config.required_tokens); after loading,
    # `tokens` holds them all and `token` the first. A node never sends its own token:
    # it reaches a replication source with the token the proxy's request carries.
    token: str = ""
    tokens: list[str] = field(default_factory=list)
    # host:port for Prometheus /metrics; empty = off.
    metrics_addr: str = ""
    log_level: str = "info"
    # Seconds a stopping server lets RPCs in flight finish.
    shutdown_grace: float = 5.0
    # Seconds a ReplicateRepository may take on this node, whatever the caller's deadline
    # (a silent source must not hold it forever).
    replication_timeout: float = 300.0
    # Bytes: a replication from a source whose object files fit in this many copies the
    # files instead of running `git fetch` (node.replica_copy); 0: always fetch. At most
    # MAX_REPLICATION_COPY_LIMIT.
    replication_copy_limit: int = 1024 * 1024
    # Seconds between sweeps of the temporaries git left in repositories when cut off
    # (node.janitor; 0 = only at start and after each push); what is removed is older
    # than `temporaries_max_age` seconds (its newest file), so a write still running is
    # never touched.
    temporaries_sweep_interval: float = 900.0
    temporaries_max_age: float = 3600.0
    # `[[concurrency]]` tables: limits per RPC (common.limiter.ConcurrencyLimit); each
    # replaces the default of its RPC (DEFAULT_CONCURRENCY).
    concurrency: list[ConcurrencyLimit] = field(default_factory=list)
    # TLS (off when empty): the gRPC listener's certificate chain and key (PEM). A node
    # that serves TLS also dials other nodes (replication sources) over TLS, verified
    # by `tls_ca` (PEM bundle; empty = the system's roots).
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""

    def __post_init__(self) -> None:
        self.token, self.tokens = required_tokens("node config", self.token, self.tokens)
        if not self.name:
            raise ConfigError("node config: 'name' must not be empty")
        if self.replication_timeout <= 0:
            raise ConfigError("node config: 'replication_timeout' must be positive")
        if not 0 <= self.replication_copy_limit <= MAX_REPLICATION_COPY_LIMIT:
            raise ConfigError(
                f"node config: 'replication_copy_limit' must be 0..{MAX_REPLICATION_COPY_LIMIT} bytes"
            )
        if self.temporaries_sweep_interval < 0:
            raise ConfigError("node config: 'temporaries_sweep_interval' must be 0 (off) or positive")
        if self.temporaries_max_age < MIN_TEMPORARIES_AGE:
            raise ConfigError(
                f"node config: 'temporaries_max_age' must be at least {MIN_TEMPORARIES_AGE:g} s "
                "(a shorter age would remove what a slow push is still writing)"
            )
        pool = descriptor_pool.Default()
        for limit in self.concurrency:
            try:
                pool.FindMethodByName(limit.rpc.strip("/").replace("/", "."))
            except KeyError:
                raise ConfigError(f"node config: concurrency: unknown rpc {limit.rpc!r}") from None
        _ = self.server_tls  # validates the pair

    def concurrency_limits(self) -> list[ConcurrencyLimit]:
        """DEFAULT_CONCURRENCY with the configured tables in place of their RPC's default."""
        merged = {limit.rpc: limit for limit in DEFAULT_CONCURRENCY}
        merged.update({limit.rpc: limit for limit in self.concurrency})
        return list(merged.values())

    @property
    def server_tls(self) -> ServerTls:
        return ServerTls(self.tls_cert, self.tls_key)

    @property
    def peer_tls(self) -> ClientTls | None:
        """How this node dials other nodes: TLS when it serves TLS itself."""
        return ClientTls(self.tls_ca) if self.server_tls.enabled else None


def load_node_config(path: str | Path) -> NodeConfig:
    """Read a node's TOML file; ConfigError on any problem."""
    config = load_config(path, NodeConfig)
    config.server_tls.check()
    if config.peer_tls is not None:
        config.peer_tls.check()
    return config
