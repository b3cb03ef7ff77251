"""`gitraft repos [PATH...]`: each repository's primary, every replica's generation
(marked `outdated` below the repository's generation, `down` when its node is
unhealthy) and its replication factor. All repositories when no PATH is given."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "repos",
        help="repositories with primary and each replica's generation",
        description=__doc__ or "",
        example="gitraft repos group/project.git",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="relative path(s) (default: all)")
    parser.set_defaults(func=lambda args: base.run(args, show))


def show(client: base.Client, args: argparse.Namespace) -> int:
    repos: list[cluster_pb2.ClusterRepository] = []
    if args.paths:
        for path in args.paths:
            found = client.call(
                "ListClusterRepositories", cluster_pb2.ListClusterRepositoriesRequest(relative_path=path)
            ).repositories
            if not found:
                raise base.Refused(f"repository not found: {path!r}")
            repos.extend(found)
    else:
        repos = list(
            client.call("ListClusterRepositories", cluster_pb2.ListClusterRepositoriesRequest()).repositories
        )
    if args.json:
        base.print_json({"repositories": [base.message_json(r) for r in repos]})
    elif repos:
        print(base.table(base.REPOSITORY_HEADERS, list(base.repository_rows(repos))))
    else:
        print("no repositories")
    return base.EXIT_OK
