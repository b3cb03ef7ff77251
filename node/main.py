"""Entry point of one storage node process."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from common.config import ConfigError
from common.logs import setup_logging
from node.config import load_node_config
from node.server import NodeServer


async def run_node(config_path: str) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code."""
    try:
        config = load_node_config(config_path)
    except ConfigError as exc:
        print(f"gitraft node: {exc}", file=sys.stderr)
        return 2
    setup_logging("node", config.log_level)
    server = NodeServer(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gitraft node", description="Run one storage node.")
    parser.add_argument("--config", required=True, help="node TOML file, e.g. node.toml")
    args = parser.parse_args(argv)
    return asyncio.run(run_node(args.config))
