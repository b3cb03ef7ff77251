"""`gitraft list-untracked-repositories`: bare repositories on the nodes' disks that
the cluster's metadata does not know (left over, or copied there by hand). Adopt one
with `gitraft track-repository PATH --authoritative-storage NODE`. Exit code 1 when a
node could not be listed."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "list-untracked-repositories",
        help="repositories on the nodes' disks the cluster does not know",
        description=__doc__ or "",
        example="gitraft list-untracked-repositories --json",
    )
    parser.set_defaults(func=lambda args: base.run(args, show))


def show(client: base.Client, args: argparse.Namespace) -> int:
    answer = client.call("ListUntrackedRepositories", cluster_pb2.ListUntrackedRepositoriesRequest())
    code = base.EXIT_ATTENTION if answer.errors else base.EXIT_OK
    if args.json:
        base.print_json(
            {
                "repositories": [
                    {"storage": r.storage, "relative_path": r.relative_path} for r in answer.repositories
                ],
                "errors": dict(sorted(answer.errors.items())),
            }
        )
        return code
    if answer.repositories:
        print(base.table(("STORAGE", "PATH"), [[r.storage, r.relative_path] for r in answer.repositories]))
        print("adopt one with: gitraft track-repository PATH --authoritative-storage STORAGE")
    else:
        print("no untracked repositories")
    for storage, error in sorted(answer.errors.items()):
        print(f"{storage}: not listed: {error}")
    return code
