"""`gitraft track-repository PATH --authoritative-storage NODE`: adopt a bare
repository that exists on NODE's disk at PATH (relative to its storage) but that the
cluster does not know, e.g. one copied there by hand. NODE must confirm it exists; it
becomes the primary, and the other replicas are created from it by replication (at the
same path: a repository already there is overwritten). PATH is then also its
client-facing path (with `.git` appended when it lacks it): clone it through any proxy."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "track-repository",
        help="adopt a repository that exists on a node's disk",
        description=__doc__ or "",
        example="gitraft track-repository imported/project.git --authoritative-storage node-a",
    )
    parser.add_argument("path", metavar="PATH", help="the repository's path under NODE's storage")
    parser.add_argument("--authoritative-storage", required=True, metavar="NODE", help="the node holding it")
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=0,
        metavar="N",
        help="replicas (default: the proxy's setting)",
    )
    parser.set_defaults(func=lambda args: base.run(args, track))


def track(client: base.Client, args: argparse.Namespace) -> int:
    if args.replication_factor < 0:
        raise base.UsageError(f"--replication-factor must be positive, got {args.replication_factor!r}")
    request = cluster_pb2.TrackRepositoryRequest(
        relative_path=args.path,
        authoritative_storage=args.authoritative_storage,
        replication_factor=args.replication_factor,
    )
    repo = client.call("TrackRepository", request).repository
    if args.json:
        base.print_json({"repository": base.message_json(repo)})
        return base.EXIT_OK
    others = [r.storage for r in repo.replicas if r.storage != repo.primary]
    print(
        f"tracked {repo.relative_path}: primary {repo.primary}"
        + (f"; replicas being created on {', '.join(others)}" if others else "")
    )
    return base.EXIT_OK
