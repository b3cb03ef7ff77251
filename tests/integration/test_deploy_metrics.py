"""Every process's /metrics after pushes, reads, a failover, a data-loss event and a
Raft leader change: the families the dashboard and the alert rules use are there, and
their values move as they should. Also: one push's correlation id appears in the
gateway's, the proxy's and the nodes' logs and in the replication job it caused.

The data-loss event ends by bringing the lost node back (this branch has no
AcceptDataloss RPC yet): the unavailable gauge goes to 1, then back to 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.testing import LocalCluster, commit_file, init_work_tree, run_git, scrape_metrics

REPO = "metrics/demo"
PATH = "metrics/demo.git"
REFERENCED = re.compile(r"\b(gitraft_[a-z_]+|process_[a-z_]+)\b")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

Samples = list[tuple[str, dict[str, str], float]]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", proxies=3, nodes=3) as c:
        yield c


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def names(samples: Samples) -> set[str]:
    return {n for n, _, _ in samples}


def proxies(cluster: LocalCluster) -> dict[str, Samples]:
    return {n: scrape_metrics(cluster.proxies[n].metrics_addr) for n in cluster.alive_proxies()}


def node(cluster: LocalCluster, name: str) -> Samples:
    return scrape_metrics(cluster.nodes[name].metrics_addr)


def log_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def push(cluster: LocalCluster, work: Path, proxy: str, text: str) -> str:
    head = commit_file(work, "README", text)
    run_git("push", cluster.git_url(proxy, REPO), "HEAD:refs/heads/main", cwd=work)
    return head


def every_proxy(cluster: LocalCluster, check: Any, what: str, timeout: float = 60.0) -> dict[str, Samples]:
    """Wait until `check(samples)` holds on every live proxy's /metrics."""

    def seen() -> dict[str, Samples] | None:
        scraped = proxies(cluster)
        return scraped if all(check(s) for s in scraped.values()) else None

    result: dict[str, Samples] = cluster.wait_until(seen, timeout, what=what)
    return result


def test_metrics_move_with_pushes_reads_failover_and_data_loss(cluster: LocalCluster, tmp_path: Path) -> None:
    work = init_work_tree(tmp_path / "work")
    push(cluster, work, "proxy-1", "one\n")
    cluster.wait_converged(REPO)
    head = push(cluster, work, "proxy-1", "two\n")
    converged = cluster.wait_converged(REPO)
    primary = converged.repository.primary
    others = sorted(r.storage for r in converged.repository.replicas if r.storage != primary)

    # --- one correlation id from the gateway to the node and into the replication jobs
    gateway = [
        r
        for r in log_records(cluster.proxies["proxy-1"].log_path)
        if r.get("msg") == "git http request" and r.get("path", "").endswith("/git-receive-pack")
    ]
    assert len(gateway) == 2
    cid = gateway[-1]["correlation_id"]
    proxy_lines = [
        r
        for r in log_records(cluster.proxies["proxy-1"].log_path)
        if r.get("msg") == "rpc finished" and r.get("method", "").endswith("PostReceivePack")
    ]
    assert [
        (r["component"], r["repository"], r["storage"]) for r in proxy_lines if r["correlation_id"] == cid
    ] == [("proxy", PATH, primary)]
    node_lines = log_records(cluster.nodes[primary].log_path)
    assert any(
        r.get("correlation_id") == cid and r.get("method", "").endswith("PostReceivePack") for r in node_lines
    )
    replicated = [
        r
        for name in cluster.proxies
        for r in log_records(cluster.proxies[name].log_path)
        if r.get("msg") == "replicated" and r.get("correlation_id") == cid
    ]
    assert {r["target"] for r in replicated} == set(others)
    assert all(r["component"] == "proxy" and r["job_id"] for r in replicated)
    for target in others:
        assert any(
            r.get("correlation_id") == cid and r.get("method", "").endswith("ReplicateRepository")
            for r in log_records(cluster.nodes[target].log_path)
        )

    # --- reads: the replica that served a clone through proxy-2 counts it
    before = scrape_metrics(cluster.proxies["proxy-2"].metrics_addr)
    nodes_before = {n: node(cluster, n) for n in cluster.nodes}
    run_git("clone", "-q", cluster.git_url("proxy-2", REPO), str(tmp_path / "clone"), cwd=tmp_path)
    assert run_git("rev-parse", "HEAD", cwd=tmp_path / "clone").stdout.strip() == head
    after = scrape_metrics(cluster.proxies["proxy-2"].metrics_addr)
    served = [
        s
        for s in cluster.nodes
        if value(after, "gitraft_proxy_reads_total", storage=s)
        > value(before, "gitraft_proxy_reads_total", storage=s)
    ]
    assert served
    assert any(
        value(node(cluster, s), "gitraft_node_git_bytes_total", command="upload-pack", direction="out")
        > value(nodes_before[s], "gitraft_node_git_bytes_total", command="upload-pack", direction="out")
        for s in served
    )

    # --- every proxy: Raft, queue, intents, data loss, health, process metrics
    scraped = every_proxy(
        cluster, lambda s: value(s, "gitraft_repositories") == 1, "every proxy counts the repository"
    )
    for name, samples in scraped.items():
        assert (
            value(samples, "gitraft_raft_role", role="leader")
            + value(samples, "gitraft_raft_role", role="follower")
            == 1
        )
        assert (
            value(samples, "gitraft_raft_has_quorum") == 1 and value(samples, "gitraft_raft_has_leader") == 1
        )
        assert (
            value(samples, "gitraft_raft_applied_index") > 0
            and value(samples, "gitraft_raft_commit_index") > 0
        )
        assert value(samples, "gitraft_raft_commit_duration_seconds_count") > 0
        assert (
            value(samples, "gitraft_raft_log_entries") > 0
            and value(samples, "gitraft_raft_journal_bytes") > 0
        )
        assert "gitraft_raft_snapshot_bytes" in names(samples)
        assert {lab["peer"] for n, lab, v in samples if n == "gitraft_raft_peer_connected" and v == 1} == (
            {"proxy-1", "proxy-2", "proxy-3"} - {name}
        )
        queue = {
            (lab["state"], lab["target"]) for n, lab, _ in samples if n == "gitraft_replication_queue_depth"
        }
        assert queue == {(s, t) for s in ("ready", "in_progress", "failed", "dead") for t in cluster.nodes}
        assert value(samples, "gitraft_repositories_unavailable") == 0
        assert value(samples, "gitraft_repository_unavailable", repository="_other") == 0
        assert (
            value(samples, "gitraft_write_intents_open") == 0
            and value(samples, "gitraft_write_intents_expired") == 0
        )
        assert {lab["storage"] for n, lab, v in samples if n == "gitraft_node_healthy" and v == 1} == set(
            cluster.nodes
        )
        assert {
            lab["storage"] for n, lab, v in samples if n == "gitraft_proxy_node_healthy" and v == 1
        } == set(cluster.nodes)
        assert {lab["proxy"] for n, lab, v in samples if n == "gitraft_proxy_live" and v == 1} == set(
            cluster.proxies
        )
        votes = {
            (lab["proxy"], lab["storage"]) for n, lab, v in samples if n == "gitraft_health_vote" and v == 1
        }
        assert votes == {(p, s) for p in cluster.proxies for s in cluster.nodes}
        assert value(samples, "process_resident_memory_bytes") > 0 and "python_info" in names(samples)
    leaders = [n for n, s in scraped.items() if value(s, "gitraft_raft_leader") == 1]
    assert len(leaders) == 1
    assert len({value(s, "gitraft_raft_term") for s in scraped.values()}) == 1
    total = {
        n: sum(value(s, n) for s in scraped.values())
        for n in (
            "gitraft_replication_delay_seconds_count",
            "gitraft_replication_duration_seconds_count",
            "gitraft_proxy_writes_total",
        )
    }
    assert total["gitraft_replication_delay_seconds_count"] >= 2  # 2 targets x the second push at least
    assert total["gitraft_replication_duration_seconds_count"] >= 2
    assert total["gitraft_proxy_writes_total"] >= 2

    # --- nodes: git subprocesses, pack bytes in, disk space, process metrics
    on_primary = node(cluster, primary)
    assert value(on_primary, "gitraft_node_git_duration_seconds_count", command="receive-pack") >= 2
    assert value(on_primary, "gitraft_node_git_bytes_total", command="receive-pack", direction="in") > 0
    for name in cluster.nodes:
        samples = node(cluster, name)
        assert value(samples, "gitraft_node_storage_free_bytes", storage=name) > 0
        assert value(samples, "gitraft_node_storage_size_bytes", storage=name) >= value(
            samples, "gitraft_node_storage_free_bytes", storage=name
        )
        assert value(samples, "process_cpu_seconds_total") > 0

    # --- every metric the alert rules and the dashboard name is served by some process
    served_names = set().union(*(names(s) for s in scraped.values()), names(on_primary))
    referenced = set(REFERENCED.findall((DEPLOY / "prometheus" / "alerts.yml").read_text()))
    referenced |= set(
        REFERENCED.findall((DEPLOY / "grafana" / "dashboards" / "gitraft-overview.json").read_text())
    )
    bases = {n.removesuffix("_bucket") for n in referenced}
    missing = {n for n in bases if n not in served_names and f"{n}_count" not in served_names}
    assert missing == set()

    # --- failover: the primary's node dies; the cluster and each proxy see it; primary moves
    failovers = sum(value(s, "gitraft_primary_changes_total", reason="failover") for s in scraped.values())
    cluster.kill(primary)
    every_proxy(
        cluster,
        lambda s: (
            value(s, "gitraft_node_healthy", storage=primary) == 0
            and value(s, "gitraft_proxy_node_healthy", storage=primary) == 0
            and value(s, "gitraft_health_vote", storage=primary) == 0
            and value(s, "gitraft_repositories_partially_available") == 1
        ),
        f"every proxy sees {primary} down",
    )
    cluster.wait_until(
        lambda: (r := cluster.repository(REPO)) is not None and r.primary != primary, 60, what="primary moved"
    )
    moved = sum(
        value(s, "gitraft_primary_changes_total", reason="failover") for s in proxies(cluster).values()
    )
    assert moved == failovers + 1

    # --- data loss: the other replicas die too -> unavailable (by count and by path) -> one returns -> 0
    for name in others:
        cluster.kill(name)
    every_proxy(
        cluster,
        lambda s: (
            value(s, "gitraft_repositories_unavailable") == 1
            and value(s, "gitraft_repository_unavailable", repository=PATH) == 1
        ),
        "every proxy reports the repository unavailable",
    )
    cluster.start_process(others[0])
    every_proxy(
        cluster,
        lambda s: (
            value(s, "gitraft_repositories_unavailable") == 0
            and value(s, "gitraft_repository_unavailable", repository=PATH) == 0
            and value(s, "gitraft_repositories_partially_available") == 1
        ),
        "the repository is available again",
    )

    # --- a Raft leader change is counted by the survivors, and the term rises
    (leader,) = leaders
    term = value(scraped[leader], "gitraft_raft_term")
    cluster.kill(leader)
    cluster.wait_for_leader(exclude=[leader])
    every_proxy(
        cluster,
        lambda s: value(s, "gitraft_raft_leader_changes_total") >= 1 and value(s, "gitraft_raft_term") > term,
        "survivors count the leader change",
    )
    survivors = proxies(cluster)
    assert sum(value(s, "gitraft_raft_leader") for s in survivors.values()) == 1
    assert all(value(s, "gitraft_raft_peer_connected", peer=leader) == 0 for s in survivors.values())
