"""`RaftConfig`: one proxy's Raft membership, files and timing (the `[raft]` TOML table).

    [raft]
    self_addr = "127.0.0.1:7001"
    peers = ["127.0.0.1:7002", "127.0.0.1:7003"]
    password = "..."             # required: the Raft port unpickles what it receives
    data_dir = ".gitraft/proxy-1/raft"

Membership is static: every proxy lists the same 3 or 5 addresses (itself in
`self_addr`, the others in `peers`). Build one with `common.config.from_dict(RaftConfig,
table)`; every key has a default that suits a local cluster except `password`.

Timing defaults come from NOTES.md (pysyncobj 0.3.17 on 2 cores, loopback):
unbatched appends (~2 ms a commit instead of ~100 ms), a new leader ~0.5 s after the
old one dies, a cut-off leader steps down after 1 s instead of 30 s, and peers retry a
lost connection every 0.5 s so a restarted member rejoins quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.config import ConfigError


@dataclass
class RaftConfig:
    self_addr: str = "127.0.0.1:7001"
    peers: list[str] = field(default_factory=list)
    # Address to bind the Raft port to ("" = self_addr; pysyncobj itself would bind
    # 0.0.0.0). Only the proxies may reach it.
    bind_addr: str = ""
    # Seconds to keep trying to bind the Raft port at start before giving up.
    bind_timeout: float = 5.0
    # Shared secret of the Raft port (Fernet): without it pysyncobj unpickles anything.
    password: str = ""
    # Largest Raft frame (bytes) read from a connection before it proved it holds the
    # password (the handshake needs a few hundred), and after (must exceed the largest
    # command; pysyncobj's own batches and snapshot chunks are ~90 KiB). A connection
    # announcing a larger frame is closed before anything more is read.
    max_frame_before_auth: int = 64 << 10
    max_frame_after_auth: int = 64 << 20
    # Journal, snapshot (full dump) and the derived SQLite database live here.
    data_dir: Path = Path(".gitraft/raft")

    # Seconds a command may take to commit and apply here before UnavailableError
    # ("no quorum"; the outcome is then unknown). Retries inside use the same command id.
    command_timeout: float = 5.0
    # Seconds before an unanswered attempt is sent again (same command id).
    retry_interval: float = 1.0

    # pysyncobj timing (see the module docstring).
    # Snapshots are copied off the tick thread, but applying a large group of commands
    # and scheduling delays on 2 busy cores (100+ ms at load 15) still stall it: 0.4 s
    # keeps spurious elections away; 0.2/0.6 fails over faster on a quiet machine.
    election_timeout_min: float = 0.4
    election_timeout_max: float = 1.0
    heartbeat_interval: float = 0.05
    tick_interval: float = 0.01
    connection_timeout: float = 2.0
    connection_retry: float = 0.5
    leader_fallback_timeout: float = 1.0
    # False: every entry is sent to followers at once (~2 ms a commit: the write path);
    # True: pysyncobj batches appends every heartbeat (~25-50 ms a commit, and no more
    # commands/s than False once the store groups concurrent commands; see bench/).
    batch_appends: bool = False

    # Log compaction (snapshot to the full dump file, journal truncated).
    compaction_min_entries: int = 5000
    compaction_min_seconds: float = 300.0

    # Attempts before a replication job is dead (travels in each command).
    job_max_attempts: int = 5
    # A proxy counts as live while its latest health vote is fresher than this.
    health_window: float = 10.0

    def __post_init__(self) -> None:
        if self.self_addr in self.peers:
            raise ConfigError(f"raft: self_addr {self.self_addr!r} must not be listed in peers")
        if len(set(self.peers)) != len(self.peers):
            raise ConfigError(f"raft: duplicate peers in {self.peers!r}")
        if not self.election_timeout_min > 3 * self.heartbeat_interval:
            raise ConfigError("raft: election_timeout_min must exceed 3 * heartbeat_interval")
        if not self.election_timeout_max > self.election_timeout_min:
            raise ConfigError("raft: election_timeout_max must exceed election_timeout_min")
        if self.connection_timeout < self.election_timeout_max:
            raise ConfigError("raft: connection_timeout must be >= election_timeout_max")
        if self.command_timeout <= 0 or self.retry_interval <= 0:
            raise ConfigError("raft: command_timeout and retry_interval must be > 0")
        if not 4 << 10 <= self.max_frame_before_auth <= self.max_frame_after_auth:
            raise ConfigError("raft: need 4096 <= max_frame_before_auth <= max_frame_after_auth")
        if self.max_frame_after_auth < 1 << 20:
            raise ConfigError("raft: max_frame_after_auth must be at least 1 MiB (1048576)")
        self.data_dir = Path(self.data_dir)

    @property
    def members(self) -> list[str]:
        """Every member's address, sorted (the same list on every proxy)."""
        return sorted([self.self_addr, *self.peers])

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "raft.journal"

    @property
    def dump_path(self) -> Path:
        return self.data_dir / "raft.dump"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "state.db"
