"""`gitraft accept-dataloss PATH --authoritative-storage NODE`: NODE's replica becomes
the repository's latest; every other replica is overwritten from it, so writes that
only they hold are lost. The repository is served again once NODE is healthy (the
elector makes it the primary). Refused when NODE holds no replica of PATH."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "accept-dataloss",
        help="make one replica authoritative (newer writes elsewhere are lost)",
        description=__doc__ or "",
        example="gitraft accept-dataloss group/project.git --authoritative-storage node-b",
    )
    parser.add_argument("path", metavar="PATH", help="relative path of the repository")
    parser.add_argument("--authoritative-storage", required=True, metavar="NODE", help="storage to keep")
    parser.set_defaults(func=lambda args: base.run(args, accept))


def accept(client: base.Client, args: argparse.Namespace) -> int:
    request = cluster_pb2.AcceptDatalossRequest(
        relative_path=args.path, authoritative_storage=args.authoritative_storage
    )
    answer = client.call("AcceptDataloss", request)
    repo = answer.repository
    if args.json:
        base.print_json({"repository": base.message_json(repo), "overwritten": list(answer.overwritten)})
        return base.EXIT_OK
    print(
        f"{repo.relative_path}: {args.authoritative_storage} is authoritative at generation {repo.generation}"
    )
    if answer.overwritten:
        print(f"overwritten from it: {', '.join(answer.overwritten)}")
    if not any(r.healthy for r in repo.replicas if r.storage == args.authoritative_storage):
        print(
            f"note: {args.authoritative_storage} is unhealthy:"
            f" {repo.relative_path} stays unavailable until it returns"
        )
    print(base.table(base.REPOSITORY_HEADERS, list(base.repository_rows([repo]))))
    return base.EXIT_OK
