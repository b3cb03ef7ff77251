"""`gitraft jobs [--state S] [--repository PATH]`: the replication queue, oldest first,
with the depth by state. `gitraft jobs retry ID... | --dead`: make dead (or failed)
jobs ready again, e.g. once the node they failed on is back."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2

STATES = ("ready", "in_progress", "failed", "dead", "completed")


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "jobs",
        help="the replication queue; 'jobs retry' retries dead jobs",
        description=__doc__ or "",
        example="gitraft jobs --state dead   then   gitraft jobs retry --dead",
    )
    parser.add_argument(
        "--state", action="append", choices=STATES, help="only jobs in this state (repeatable)"
    )
    parser.add_argument("--repository", metavar="PATH", help="only this repository's jobs")
    parser.add_argument("--limit", type=int, default=1000, help="at most this many jobs (default 1000)")
    parser.set_defaults(func=lambda args: base.run(args, show))
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    retry = actions.add_parser(
        "retry",
        help="make dead (or failed) jobs ready again",
        description="Make the given jobs, or every dead job, ready again.",
        epilog="example:\n  gitraft jobs retry 12 15\n  gitraft jobs retry --dead",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="job ids")
    retry.add_argument("--dead", action="store_true", help="every dead job")
    base.add_connection_options(retry, inherit=True)
    retry.set_defaults(func=lambda args: base.run(args, do_retry))


def show(client: base.Client, args: argparse.Namespace) -> int:
    request = cluster_pb2.ListReplicationJobsRequest(
        states=args.state or [], limit=max(1, args.limit), relative_path=args.repository or ""
    )
    answer = client.call("ListReplicationJobs", request)
    depth = dict(answer.depth_by_state)
    if args.json:
        base.print_json(
            {
                "jobs": [base.message_json(j) for j in answer.jobs],
                "depth_by_state": dict(sorted(depth.items())),
            }
        )
        return base.EXIT_OK
    print("queue: " + " ".join(f"{s}={depth.get(s, 0)}" for s in STATES))
    if not answer.jobs:
        print("no jobs")
        return base.EXIT_OK
    rows = [
        [
            j.id,
            j.relative_path or j.repository_id,
            j.change,
            j.source,
            j.target,
            j.source_generation,
            j.state,
            j.attempts,
            j.last_error[:60] or "-",
        ]
        for j in answer.jobs
    ]
    print(
        base.table(
            (
                "ID",
                "REPOSITORY",
                "CHANGE",
                "SOURCE",
                "TARGET",
                "GENERATION",
                "STATE",
                "ATTEMPTS",
                "LAST ERROR",
            ),
            rows,
        )
    )
    if depth.get("dead"):
        print("dead jobs are not retried by themselves: fix the cause, then 'gitraft jobs retry --dead'")
    return base.EXIT_OK


def do_retry(client: base.Client, args: argparse.Namespace) -> int:
    if not args.ids and not args.dead:
        raise base.UsageError("name job ids or pass --dead")
    request = cluster_pb2.RetryReplicationJobsRequest(job_ids=args.ids, all_dead=args.dead)
    answer = client.call("RetryReplicationJobs", request)
    retried = list(answer.retried)
    if args.json:
        base.print_json({"retried": retried})
    elif retried:
        print(f"retried {base.plural(len(retried), 'job')}: {', '.join(str(i) for i in retried)}")
    else:
        print("no job retried")
    return base.EXIT_OK
