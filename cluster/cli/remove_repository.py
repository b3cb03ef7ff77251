"""`gitraft remove-repository PATH [--apply]`: forget a repository and delete every
replica from disk. Without `--apply` it only shows what would be removed (a dry run).
With it the cluster stops serving PATH at once; replication jobs delete the replicas."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "remove-repository",
        help="remove a repository and its replicas (dry run unless --apply)",
        description=__doc__ or "",
        example="gitraft remove-repository group/old.git --apply",
    )
    parser.add_argument("path", metavar="PATH", help="relative path of the repository")
    parser.add_argument("--apply", action="store_true", help="remove for real")
    parser.set_defaults(func=lambda args: base.run(args, remove))


def remove(client: base.Client, args: argparse.Namespace) -> int:
    request = cluster_pb2.RemoveClusterRepositoryRequest(relative_path=args.path, apply=args.apply)
    answer = client.call("RemoveClusterRepository", request)
    repo = answer.repository
    if args.json:
        base.print_json({"repository": base.message_json(repo), "removed": answer.removed})
        return base.EXIT_OK
    storages = ", ".join(r.storage for r in repo.replicas) or "none"
    if answer.removed:
        print(f"removed {repo.relative_path}; its replicas on {storages} are being deleted")
    else:
        print(f"would remove {repo.relative_path} (id {repo.repository_id}, replicas on {storages})")
        print("dry run: nothing changed; run again with --apply to remove it")
    return base.EXIT_OK
