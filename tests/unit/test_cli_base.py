"""The operator CLI's shared parts: where the cluster is found, the status verdict,
tables (no network)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cluster.cli import base
from cluster.cli.dataloss import suggestion
from cluster.cli.status import verdict
from gitraft.v1 import cluster_pb2


def args(proxy: str | None = None, token: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(proxy=proxy, token=token)


def test_flags_then_variables_then_cluster_json(tmp_path: Path) -> None:
    info = tmp_path / "cluster.json"
    info.write_text(json.dumps({"proxies": ["127.0.0.1:1", "127.0.0.1:2"], "token": "from-file"}))
    env = {"GITRAFT_CLUSTER_FILE": str(info)}
    assert base.find_cluster(args(), env) == base.Target(("127.0.0.1:1", "127.0.0.1:2"), "from-file")
    env_vars = {**env, "GITRAFT_PROXY": "h:3", "GITRAFT_TOKEN": "from-env"}
    assert base.find_cluster(args(), env_vars) == base.Target(("h:3",), "from-env")
    assert base.find_cluster(args("a:1, b:2", "flag"), env_vars) == base.Target(("a:1", "b:2"), "flag")
    # A proxy from the flags, the token from cluster.json.
    assert base.find_cluster(args("a:1"), env) == base.Target(("a:1",), "from-file")


def test_missing_cluster_or_token_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(base.UsageError, match="no cluster file"):
        base.find_cluster(args(), {"GITRAFT_CLUSTER_FILE": str(tmp_path / "none.json")})
    with pytest.raises(base.UsageError, match="no token"):
        base.find_cluster(args("a:1"), {"GITRAFT_CLUSTER_FILE": str(tmp_path / "none.json")})


def status(**fields: object) -> cluster_pb2.ClusterStatusResponse:
    proxies = [
        cluster_pb2.ProxyStatus(name="proxy-1", raft_role="leader", reachable=True),
        cluster_pb2.ProxyStatus(name="proxy-2", raft_role="follower", reachable=True),
    ]
    nodes = [cluster_pb2.NodeHealth(storage=n, healthy=True) for n in ("node-a", "node-b")]
    return cluster_pb2.ClusterStatusResponse(proxies=proxies, nodes=nodes, repository_count=3, **fields)  # type: ignore[arg-type]


def test_verdict_names_the_most_urgent_command_first() -> None:
    assert verdict(status()) == (True, "OK: 2 proxies, 2 nodes healthy, 3 repositories, no data at risk")
    s = status(unavailable_repositories=2, dead_jobs=1)
    s.nodes[1].healthy = False
    s.proxies[1].reachable = False
    ok, line = verdict(s)
    assert not ok
    assert line == (
        "DEGRADED: 2 repositories unavailable (data loss pending); 1 dead replication job; node node-b down;"
        " proxy proxy-2 out of quorum - run 'gitraft dataloss'"
    )
    assert (
        verdict(status(dead_jobs=3))[1]
        == "DEGRADED: 3 dead replication jobs - run 'gitraft jobs --state dead'"
    )
    leaderless = status()
    leaderless.proxies[0].raft_role = "candidate"
    assert verdict(leaderless)[1] == "DEGRADED: no Raft leader - run 'gitraft check'"


def test_dataloss_suggests_the_healthy_replica_with_the_highest_generation() -> None:
    replica = cluster_pb2.ReplicaStatus
    repo = cluster_pb2.ClusterRepository(
        relative_path="g/r.git",
        replicas=[
            replica(storage="a", generation=5, healthy=False),
            replica(storage="b", generation=3, healthy=True),
            replica(storage="c", generation=4, healthy=True),
        ],
    )
    assert suggestion(repo) == "gitraft accept-dataloss g/r.git --authoritative-storage c"


def test_table_aligns_columns() -> None:
    assert base.table(("A", "LONG HEADER", "Z"), [["xyz", 1, "last"], ["", "", ""]]).split("\n") == [
        "A    LONG HEADER  Z",
        "xyz  1            last",
        "",
    ]
    assert base.human_bytes(-1) == "unknown" and base.human_bytes(3 * 2**30) == "3.0 GiB"


def test_jobs_retry_takes_the_connection_options_before_or_after_retry() -> None:
    from cluster.cli.main import build_parser

    parser = build_parser()
    for argv in (
        ["jobs", "--proxy", "h:1", "--token", "t", "--json", "--timeout", "5", "retry", "--dead"],
        ["jobs", "retry", "--dead", "--proxy", "h:1", "--token", "t", "--json", "--timeout", "5"],
    ):
        parsed = parser.parse_args(argv)
        assert (parsed.proxy, parsed.token, parsed.json, parsed.timeout, parsed.dead) == (
            "h:1",
            "t",
            True,
            5.0,
            True,
        )
    parsed = parser.parse_args(["jobs", "retry", "3"])
    assert (parsed.proxy, parsed.token, parsed.json, parsed.timeout, parsed.ids) == (
        None,
        None,
        False,
        30.0,
        [3],
    )
