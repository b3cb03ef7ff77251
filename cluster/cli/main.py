"""`gitraft`: the one entry point. Subcommands live one per module in this package.

A subcommand module defines `register(subparsers)`, which adds its parser and sets
`func` (taking the parsed args, returning the exit code). A failing command exits
non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Module names under cluster.cli, in the order `gitraft --help` lists them.
SUBCOMMANDS = (
    "node",
    "proxy",
    "dev",
    "gateway",
    # operator commands (ClusterService; cluster.cli.base)
    "status",
    "repos",
    "dataloss",
    "accept_dataloss",
    "failover",
    "set_replication_factor",
    "verify",
    "jobs",
    "track_repository",
    "remove_repository",
    "list_untracked_repositories",
    "check",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitraft", description="gitraft: a highly available Git storage cluster."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"cluster.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
