"""`gitraft dev`: run a whole local cluster (proxies + nodes) in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run a local cluster (3 proxies, 3 nodes) in the foreground",
        description=(
            "Start storage nodes and routing proxies on 127.0.0.1, write "
            "<data-dir>/cluster.json and print a clone URL; Ctrl-C stops them all. "
            "Started again on the same data directory, the cluster comes back on the "
            "same ports with the same token and repositories."
        ),
        epilog="example: gitraft dev --data-dir ./.gitraft --base-port 7000",
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".gitraft"), help="default: ./.gitraft")
    parser.add_argument("--proxies", type=int, default=3, help="number of proxies (default 3)")
    parser.add_argument("--nodes", type=int, default=3, help="number of storage nodes (default 3)")
    parser.add_argument(
        "--base-port",
        type=int,
        default=None,
        help="deterministic ports: process k uses P+4k..P+4k+3 (default: free ports, remembered)",
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="also run Prometheus (Debian's package) with the shipped alert rules; prints its URL",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cluster.local.dev import run_dev

    return run_dev(args.data_dir, args.proxies, args.nodes, args.base_port, prometheus=args.prometheus)
