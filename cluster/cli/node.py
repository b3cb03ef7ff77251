"""`gitraft node --config node.toml`: run one storage node in the foreground."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "node",
        help="run one storage node",
        description="Run one storage node serving a storage directory of bare repositories.",
        epilog="example: gitraft node --config /etc/gitraft/node-a.toml",
    )
    parser.add_argument("--config", required=True, help="node TOML file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from node.main import run_node

    return asyncio.run(run_node(args.config))
