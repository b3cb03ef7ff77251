"""`gitraft set-replication-factor PATH N`: give a repository N replicas. New replicas
go on the healthy storages holding the fewest repositories (created by replication);
removed ones are non-primary replicas, outdated or unhealthy ones first (deleted from
disk by replication jobs). Prints the resulting assignment."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "set-replication-factor",
        help="add or remove replicas of a repository",
        description=__doc__ or "",
        example="gitraft set-replication-factor group/project.git 2",
    )
    parser.add_argument("path", metavar="PATH", help="relative path of the repository")
    parser.add_argument("replication_factor", metavar="N", type=int, help="replicas wanted (>= 1)")
    parser.set_defaults(func=lambda args: base.run(args, apply))


def apply(client: base.Client, args: argparse.Namespace) -> int:
    if args.replication_factor < 1:
        raise base.UsageError(f"N must be at least 1, got {args.replication_factor!r}")
    request = cluster_pb2.SetReplicationFactorRequest(
        relative_path=args.path, replication_factor=args.replication_factor
    )
    answer = client.call("SetReplicationFactor", request)
    repo = answer.repository
    if args.json:
        base.print_json(
            {
                "repository": base.message_json(repo),
                "assigned": list(answer.assigned),
                "unassigned": list(answer.unassigned),
            }
        )
        return base.EXIT_OK
    storages = [r.storage + (" (primary)" if r.storage == repo.primary else "") for r in repo.replicas]
    print(f"{repo.relative_path}: replication factor {repo.replication_factor}: {', '.join(storages)}")
    if answer.assigned:
        print(f"assigned: {', '.join(answer.assigned)} (replicated from an up-to-date replica)")
    if answer.unassigned:
        print(f"unassigned: {', '.join(answer.unassigned)} (deleted from disk by replication jobs)")
    if not answer.assigned and not answer.unassigned:
        print("unchanged")
    return base.EXIT_OK
