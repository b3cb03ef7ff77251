"""A node that starts over a storage left behind by a crash cleans it first."""

from __future__ import annotations

from pathlib import Path

import pygit2

from cluster.testing import free_port
from node.config import NodeConfig
from node.server import NodeServer
from node.storage import TEMP_MARKER


async def test_start_removes_crash_leftovers_and_keeps_repositories(tmp_path: Path, token: str) -> None:
    storage = tmp_path / "storage"
    repo = storage / "group" / "kept.git"
    pygit2.init_repository(str(repo), bare=True)
    leftover = storage / "group" / f"half{TEMP_MARKER}made"
    (leftover / "objects").mkdir(parents=True)
    config = NodeConfig(
        name="node-s", listen_addr=f"127.0.0.1:{free_port()}", storage_path=storage, token=token
    )
    server = NodeServer(config)
    await server.start()
    try:
        assert not leftover.exists()
        assert (repo / "HEAD").is_file()
    finally:
        await server.stop(0)
