"""`gitraft verify [PATH...]`: compare the checksums (refs and default branch) of every
replica of the named repositories (all when none); report replicas that differ from
the primary's at the same generation, and the repairs that were scheduled for them.
Exit code 1 when a mismatch was found."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "verify",
        help="compare replica checksums, report and schedule repairs",
        description=__doc__ or "",
        example="gitraft verify group/project.git",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="relative path(s) (default: all)")
    parser.set_defaults(func=lambda args: base.run(args, verify))


def verify(client: base.Client, args: argparse.Namespace) -> int:
    answer = client.call(
        "VerifyRepositories", cluster_pb2.VerifyRepositoriesRequest(relative_paths=args.paths)
    )
    code = base.EXIT_ATTENTION if answer.mismatches else base.EXIT_OK
    if args.json:
        base.print_json(
            {
                "repositories": [base.message_json(v) for v in answer.repositories],
                "mismatches": answer.mismatches,
            }
        )
        return code
    rows = []
    for v in answer.repositories:
        for r in v.replicas:
            state = "ok" if r.matches else ("ERROR" if r.error else "MISMATCH")
            rows.append(
                [
                    v.relative_path,
                    r.storage + (" (primary)" if r.storage == v.primary else ""),
                    r.generation,
                    r.checksum[:12] or "-",
                    r.default_branch or "-",
                    state + (f": {r.error}" if r.error else ""),
                ]
            )
    if rows:
        print(base.table(("REPOSITORY", "STORAGE", "GENERATION", "CHECKSUM", "HEAD", "STATE"), rows))
    print(
        f"{base.plural(len(answer.repositories), 'repository', 'repositories')} verified,"
        f" {base.plural(answer.mismatches, 'mismatch', 'mismatches')}"
    )
    for v in answer.repositories:
        if v.repairs_scheduled:
            print(f"repair scheduled: {v.relative_path} on {', '.join(v.repairs_scheduled)}")
    return code
