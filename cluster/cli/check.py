"""`gitraft check`: is the cluster set up to work? One line per check, exit code 1 when
any failed:

    client token     the proxy accepted this token
    raft             a Raft quorum commits, and who leads (as the answering proxy sees it)
    raft peers       every other proxy is connected to the answering proxy's Raft member
    node NODE        the proxy reaches NODE with the node token
    storage NODE     NODE wrote, synced and removed a probe file in its storage
    proxy ADDR       every other known proxy answers (with this token) and has a quorum;
                     the checks that fail as that proxy sees them are listed too
    clock skew       the proxies' clocks agree within --max-skew seconds (measured from
                     here, so it needs two proxy addresses: cluster.json lists all,
                     --proxy takes a comma-separated list)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from cluster.cli import base
from gitraft.v1 import cluster_pb2, cluster_pb2_grpc


def register(subparsers: Any) -> None:
    parser = base.add_parser(
        subparsers,
        "check",
        help="check quorum, node reachability and tokens, storage, clock skew",
        description=__doc__ or "",
        example="gitraft check --proxy 127.0.0.1:9001,127.0.0.1:9005,127.0.0.1:9009",
    )
    parser.add_argument(
        "--max-skew", type=float, default=1.0, help="seconds of clock skew allowed (default 1)"
    )
    parser.set_defaults(func=lambda args: base.run(args, check))


def timed_check(
    stub: Any, token: str, timeout: float, address: str
) -> tuple[cluster_pb2.CheckClusterResponse, float]:
    """CheckCluster and the offset of the proxy's clock from ours. The proxy reads its
    clock once its checks are done, just before answering, so the offset is measured
    against our clock on receipt (its error is the answer's one-way delay, not the
    checks' duration)."""
    answer = base.call(stub, "CheckCluster", cluster_pb2.CheckClusterRequest(), token, timeout, address)
    return answer, answer.proxy_time - time.time()


def other_proxies(client: base.Client, args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[float]]:
    results: list[dict[str, Any]] = []
    offsets: list[float] = []
    for address in client.target.proxies:
        if address == client.address:
            continue
        channel = base.open_channel(address)
        if channel is None:
            results.append({"name": f"proxy {address}", "ok": False, "detail": "unreachable"})
            continue
        try:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            answer, offset = timed_check(stub, client.target.token, args.timeout, address)
        except base.CliError as exc:
            results.append({"name": f"proxy {address}", "ok": False, "detail": str(exc)})
            continue
        finally:
            channel.close()
        offsets.append(offset)
        raft = next((c for c in answer.checks if c.name == "raft"), None)
        ok = raft is not None and raft.ok
        detail = f"{answer.answered_by} answers; raft: {raft.detail if raft else 'not reported'}"
        results.append({"name": f"proxy {address}", "ok": ok, "detail": detail})
        # What that proxy sees failing (e.g. a node token wrong in its config).
        results += [
            {"name": f"{c.name} (from {answer.answered_by})", "ok": False, "detail": c.detail}
            for c in answer.checks
            if not c.ok and c.name != "raft"
        ]
    return results, offsets


def check(client: base.Client, args: argparse.Namespace) -> int:
    first, offset = timed_check(client.stub, client.target.token, args.timeout, client.address)
    results: list[dict[str, Any]] = [
        {"name": "client token", "ok": True, "detail": f"accepted by {first.answered_by} at {client.address}"}
    ]
    results += [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in first.checks]
    others, offsets = other_proxies(client, args)
    results += others
    offsets.append(offset)
    if len(offsets) < 2:
        results.append(
            {"name": "clock skew", "ok": None, "detail": "not measured: only one proxy answered (see --help)"}
        )
    else:
        skew = max(offsets) - min(offsets)
        results.append(
            {
                "name": "clock skew",
                "ok": skew <= args.max_skew,
                "detail": f"{skew:.3f}s between {len(offsets)} proxies (allowed {args.max_skew:g}s)",
            }
        )
    failed = [r for r in results if r["ok"] is False]
    if args.json:
        base.print_json({"ok": not failed, "answered_by": first.answered_by, "checks": results})
    else:
        word = {True: "ok", False: "FAIL", None: "skip"}
        print(
            base.table(
                ("RESULT", "CHECK", "DETAIL"), [[word[r["ok"]], r["name"], r["detail"]] for r in results]
            )
        )
    return base.EXIT_ATTENTION if failed else base.EXIT_OK
