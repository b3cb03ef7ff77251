"""`gitraft dataloss [--partially-unavailable]`: repositories with no healthy
up-to-date replica (reads and writes refused until the lost node returns or an operator
accepts the loss), with each replica's generation; with the flag also those that are
available but have outdated or unhealthy replicas."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "dataloss",
        help="repositories with no healthy up-to-date replica",
        description=__doc__ or "",
        example="gitraft dataloss --partially-unavailable",
    )
    parser.add_argument(
        "--partially-unavailable",
        action="store_true",
        help="also list available repositories with outdated or unhealthy replicas",
    )
    parser.set_defaults(func=lambda args: base.run(args, show))


def suggestion(repo: cluster_pb2.ClusterRepository) -> str:
    """The accept-dataloss command for `repo`: its healthy replica with the highest
    generation (then by name), or a placeholder when none is healthy."""
    healthy = sorted((r for r in repo.replicas if r.healthy), key=lambda r: (-r.generation, r.storage))
    node = healthy[0].storage if healthy else "NODE"
    return f"gitraft accept-dataloss {repo.relative_path} --authoritative-storage {node}"


def show(client: base.Client, args: argparse.Namespace) -> int:
    request = cluster_pb2.DatalossCheckRequest(include_partially_available=args.partially_unavailable)
    answer = client.call("DatalossCheck", request)
    if args.json:
        base.print_json(
            {
                "unavailable": [base.message_json(r) for r in answer.unavailable],
                "partially_available": [base.message_json(r) for r in answer.partially_available],
            }
        )
        return base.EXIT_OK
    if answer.unavailable:
        print(
            f"{base.plural(len(answer.unavailable), 'repository', 'repositories')} unavailable"
            " (no healthy replica holds the latest generation):"
        )
        print(base.table(base.REPOSITORY_HEADERS, list(base.repository_rows(answer.unavailable))))
        print("wait for the node(s) marked down to return, or accept losing the writes only they hold:")
        for repo in answer.unavailable:
            print(f"  {suggestion(repo)}")
    else:
        print("no repository is unavailable")
    if args.partially_unavailable:
        if answer.partially_available:
            print(
                f"\n{base.plural(len(answer.partially_available), 'repository', 'repositories')}"
                " available with outdated or unhealthy replicas:"
            )
            print(base.table(base.REPOSITORY_HEADERS, list(base.repository_rows(answer.partially_available))))
        else:
            print("no repository has outdated or unhealthy replicas")
    return base.EXIT_OK
