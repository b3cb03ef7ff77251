"""A NodeProcess whose TOML gets extra lines (tables such as `[[concurrency]]`, keys such
as `replication_timeout`), for tests of the node's own limits."""

from __future__ import annotations

from dataclasses import dataclass

from cluster.testing import NodeProcess


@dataclass
class TunedNode(NodeProcess):
    """NodeProcess with `extra_toml` written after the generated keys. Top-level keys in
    `extra_toml` must come before any table in it."""

    extra_toml: str = ""

    def write_config(self) -> None:
        super().write_config()
        with self.config_path.open("a", encoding="utf-8") as config:
            config.write(self.extra_toml)
