"""`gitraft failover PATH --to NODE [--force]`: move a repository's primary to NODE.

Refused unless NODE holds a replica, is healthy and is up to date. With `--force` an
outdated NODE is accepted (it must still be healthy): it first becomes the
authoritative replica, and the writes that only the replicas ahead of it hold are LOST
(a warning names those replicas)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "failover",
        help="move a repository's primary to another node",
        description=__doc__ or "",
        example="gitraft failover group/project.git --to node-c",
    )
    parser.add_argument("path", metavar="PATH", help="relative path of the repository")
    parser.add_argument("--to", required=True, metavar="NODE", help="the new primary")
    parser.add_argument("--force", action="store_true", help="accept an outdated NODE (loses newer writes)")
    parser.set_defaults(func=lambda args: base.run(args, failover))


def failover(client: base.Client, args: argparse.Namespace) -> int:
    request = cluster_pb2.SetPrimaryRequest(relative_path=args.path, storage=args.to, force=args.force)
    answer = client.call("SetPrimary", request)
    repo = answer.repository
    if answer.overwritten:
        print(
            f"gitraft failover: warning: writes held only by {', '.join(answer.overwritten)} are lost;"
            f" they are overwritten from {args.to}",
            file=sys.stderr,
        )
    if args.json:
        base.print_json(
            {
                "repository": base.message_json(repo),
                "previous_primary": answer.previous_primary,
                "overwritten": list(answer.overwritten),
            }
        )
    else:
        print(f"{repo.relative_path}: primary {answer.previous_primary} -> {repo.primary}")
    return base.EXIT_OK
