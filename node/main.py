"""Entry point of one storage node process: serve until SIGINT/SIGTERM, then stop
cleanly (common.serving)."""

from __future__ import annotations

from common import serving
from node.config import load_node_config
from node.git import watch_children_by_pidfd
from node.server import NodeServer


async def run_node(config_path: str) -> int:
    """Serve until a signal; returns the exit code (2: bad config, 1: could not start)."""
    watch_children_by_pidfd()
    return await serving.run_server("node", config_path, load_node_config, NodeServer)


def main(argv: list[str] | None = None) -> int:
    return serving.main("node", "Run one storage node.", run_node, argv)
