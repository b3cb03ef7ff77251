"""`gitraft status`: is any data at risk, and what to run; then proxies, nodes, queue.

The first line is the verdict: `OK: ...`, or `DEGRADED: <what> - run '<command>'`,
naming the most urgent command (data loss first, then dead jobs, then a node or proxy
down). Exit code 0 when OK, 1 when DEGRADED.
"""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "status",
        help="is any data at risk? proxies, nodes, replication queue",
        description=__doc__ or "",
        example="gitraft status --proxy 127.0.0.1:9001",
    )
    parser.set_defaults(func=lambda args: base.run(args, show))


def verdict(s: cluster_pb2.ClusterStatusResponse) -> tuple[bool, str]:
    """(ok, first line) for a status answer (see module doc)."""
    problems: list[tuple[str, str]] = []  # (what, command), most urgent first
    if s.unavailable_repositories:
        n = base.plural(s.unavailable_repositories, "repository", "repositories")
        problems.append((f"{n} unavailable (data loss pending)", "gitraft dataloss"))
    if s.dead_jobs:
        problems.append((f"{base.plural(s.dead_jobs, 'dead replication job')}", "gitraft jobs --state dead"))
    down = [n.storage for n in s.nodes if not n.healthy]
    if down:
        what = f"node {down[0]} down" if len(down) == 1 else f"nodes {', '.join(down)} down"
        problems.append((what, "gitraft dataloss --partially-unavailable"))
    out = [p.name or p.raft_address for p in s.proxies if not p.reachable]
    if out or not any(p.raft_role == "leader" for p in s.proxies):
        what = f"proxy {', '.join(out)} out of quorum" if out else "no Raft leader"
        problems.append((what, "gitraft check"))
    if s.partially_available_repositories and not down:
        n = base.plural(s.partially_available_repositories, "repository", "repositories")
        problems.append((f"{n} with outdated replicas", "gitraft repos"))
    if not problems:
        return True, (
            f"OK: {base.plural(len(s.proxies), 'proxy', 'proxies')},"
            f" {base.plural(len(s.nodes), 'node')} healthy,"
            f" {base.plural(s.repository_count, 'repository', 'repositories')}, no data at risk"
        )
    return False, f"DEGRADED: {'; '.join(w for w, _ in problems)} - run '{problems[0][1]}'"


def status_json(s: cluster_pb2.ClusterStatusResponse) -> dict[str, Any]:
    ok, line = verdict(s)
    return {
        "ok": ok,
        "verdict": line,
        "answered_by": s.answered_by,
        "proxies": [
            {
                "name": p.name,
                "raft_address": p.raft_address,
                "raft_role": p.raft_role,
                "raft_term": p.raft_term,
                "commit_index": p.commit_index,
                "applied_index": p.applied_index,
                "reachable": p.reachable,
            }
            for p in s.proxies
        ],
        "nodes": [
            {
                "storage": n.storage,
                "address": n.address,
                "healthy": n.healthy,
                "health_by_proxy": dict(sorted(n.health_by_proxy.items())),
                "repositories": n.repositories,
                "primaries": n.primaries,
                "free_bytes": n.free_bytes,
            }
            for n in s.nodes
        ],
        "repositories": s.repository_count,
        "unavailable_repositories": s.unavailable_repositories,
        "partially_available_repositories": s.partially_available_repositories,
        "queue_depth": dict(sorted(s.queue_depth.items())),
        "open_write_intents": s.open_write_intents,
        "dead_jobs": s.dead_jobs,
    }


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def status_text(s: cluster_pb2.ClusterStatusResponse) -> str:
    _, line = verdict(s)
    proxies = base.table(
        ("PROXY", "ROLE", "TERM", "COMMIT", "APPLIED", "REACHABLE", "RAFT ADDRESS"),
        [
            [
                p.name or "?",
                p.raft_role,
                p.raft_term or "-",
                p.commit_index or "-",
                p.applied_index or "-",
                _yes(p.reachable),
                p.raft_address,
            ]
            for p in s.proxies
        ],
    )
    nodes = base.table(
        ("NODE", "HEALTH", "SEEN BY PROXIES", "REPOS", "PRIMARIES", "DISK FREE", "ADDRESS"),
        [
            [
                n.storage,
                "up" if n.healthy else "DOWN",
                " ".join(f"{p}={'up' if v else 'down'}" for p, v in sorted(n.health_by_proxy.items())) or "-",
                n.repositories,
                n.primaries,
                base.human_bytes(n.free_bytes),
                n.address,
            ]
            for n in s.nodes
        ],
    )
    order = ("ready", "in_progress", "failed", "dead", "completed")
    depth = dict(s.queue_depth)
    queue = " ".join(f"{k}={depth.get(k, 0)}" for k in order)
    return "\n".join(
        [
            line,
            f"(answered by {s.answered_by})",
            "",
            proxies,
            "",
            nodes,
            "",
            f"repositories: {s.repository_count} ({s.unavailable_repositories} unavailable,"
            f" {s.partially_available_repositories} partially available)",
            f"replication queue: {queue}",
            f"open write intents: {s.open_write_intents}",
            f"dead jobs: {s.dead_jobs}",
        ]
    )


def show(client: base.Client, args: argparse.Namespace) -> int:
    s = client.call("ClusterStatus", cluster_pb2.ClusterStatusRequest())
    if args.json:
        base.print_json(status_json(s))
    else:
        print(status_text(s))
    return base.EXIT_OK if verdict(s)[0] else base.EXIT_ATTENTION
