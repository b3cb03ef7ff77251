"""`gitraft proxy --config proxy.toml`: run one routing proxy in the foreground."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "proxy",
        help="run one routing proxy",
        description="Run one routing proxy: gRPC router, Raft metadata member, git HTTP gateway.",
        epilog="example: gitraft proxy --config /etc/gitraft/proxy-1.toml",
    )
    parser.add_argument("--config", required=True, help="proxy TOML file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cluster.proxy.main import run_proxy

    return asyncio.run(run_proxy(args.config))
