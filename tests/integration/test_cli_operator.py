"""The operator commands, run as the real `gitraft` executable against one real local
cluster (3 proxies, 3 nodes) shared by this module's tests: each command with and
without --json, discovery through ./.gitraft/cluster.json, exit codes, failover under a
push loop, set-replication-factor, remove-repository, verify repairing a ref changed by
hand, and track-repository adopting a bare repository copied onto a node's disk.

Tests that change the cluster leave it healthy; each works on its own repository.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.local.ports import refused_address
from cluster.testing import LocalCluster, commit_file, init_work_tree, remote_refs, run_git
from tests.integration.cli_helpers import Operator

_names = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("cli")
    with LocalCluster(root / "cluster", proxies=3, nodes=3) as c:
        yield c


@pytest.fixture(scope="module")
def op(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Operator:
    return Operator(cluster, tmp_path_factory.mktemp("operator"))


def new_repository(cluster: LocalCluster, work: Path, name: str = "") -> tuple[str, str]:
    """Push a first commit to a new repository through proxy-1 and wait until every
    replica holds it; (relative path as the cluster names it, commit id)."""
    path = f"ops/{name or 'repo'}-{next(_names)}"
    init_work_tree(work)
    oid = commit_file(work, "README", f"{path}\n")
    run_git("push", "-q", cluster.git_url("proxy-1", path), "HEAD:refs/heads/main", cwd=work)
    cluster.wait_converged(path)
    return f"{path}.git", oid


def test_status_and_check_find_the_cluster_from_cluster_json(op: Operator) -> None:
    text = op.ok("status")
    first = text.splitlines()[0]
    assert first.startswith("OK: 3 proxies, 3 nodes healthy"), text
    assert "PROXY" in text and "NODE" in text and "replication queue:" in text
    status = op.json("status")
    assert status["ok"] is True and status["verdict"] == first
    assert sorted(p["name"] for p in status["proxies"]) == ["proxy-1", "proxy-2", "proxy-3"]
    assert [p["raft_role"] for p in status["proxies"]].count("leader") == 1
    nodes = {n["storage"]: n for n in status["nodes"]}
    assert sorted(nodes) == ["node-a", "node-b", "node-c"]
    for n in nodes.values():
        assert n["healthy"] is True and n["free_bytes"] > 0
        assert n["health_by_proxy"] == {"proxy-1": True, "proxy-2": True, "proxy-3": True}
    assert status["unavailable_repositories"] == 0 and status["dead_jobs"] == 0

    text = op.ok("check")
    assert text.splitlines()[0].split() == ["RESULT", "CHECK", "DETAIL"]
    assert all(line.startswith("ok ") for line in text.splitlines()[1:]), text
    check = op.json("check")
    names = [c["name"] for c in check["checks"]]
    for name in ("client token", "raft", "raft peers", "node node-b", "storage node-c", "clock skew"):
        assert name in names
    assert check["ok"] is True and all(c["ok"] is True for c in check["checks"])


def test_exit_codes_usage_unreachable_refused(op: Operator, tmp_path: Path) -> None:
    done = op.run("status", cwd=tmp_path)  # no cluster.json there, no variables
    assert done.returncode == 2 and "no cluster file" in done.stderr
    with refused_address() as nowhere:
        done = op.run("status", "--proxy", nowhere, "--token", "x")
    assert done.returncode == 3 and done.stderr.startswith("gitraft status: cluster unreachable")
    refusal = op.refused("repos", "no/such/repository.git")
    assert refusal == "gitraft repos: repository not found: 'no/such/repository.git'"
    address = op.cluster.proxies["proxy-2"].address
    refusal = op.refused("status", "--proxy", address, "--token", "wrong-token")
    assert refusal.startswith("gitraft status: token refused by")
    # The flags and variables take precedence over cluster.json.
    done = op.run(
        "repos", "--json", env={"GITRAFT_PROXY": address, "GITRAFT_TOKEN": op.cluster.token}, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr


def test_repos_dataloss_and_jobs(op: Operator, tmp_path: Path) -> None:
    path, _ = new_repository(op.cluster, tmp_path / "w")
    lines = op.ok("repos", path).splitlines()
    assert lines[0].split()[:4] == ["REPOSITORY", "PRIMARY", "GENERATION", "RF"]
    assert lines[1].split()[0] == path and " 3 " in lines[1]
    (repo,) = op.json("repos", path)["repositories"]
    assert repo["relative_path"] == path and repo["replication_factor"] == 3
    assert {r["storage"]: r["up_to_date"] for r in repo["replicas"]} == {
        "node-a": True,
        "node-b": True,
        "node-c": True,
    }
    assert len({r["generation"] for r in repo["replicas"]}) == 1
    everything = op.json("repos")["repositories"]
    assert path in [r["relative_path"] for r in everything]

    assert op.ok("dataloss", "--partially-unavailable").splitlines() == [
        "no repository is unavailable",
        "no repository has outdated or unhealthy replicas",
    ]
    assert op.json("dataloss") == {"unavailable": [], "partially_available": []}

    jobs = op.json("jobs", "--repository", path)
    assert jobs["jobs"], "a new repository's replicas are created by jobs"
    assert {j["relative_path"] for j in jobs["jobs"]} == {path}
    assert {j["state"] for j in jobs["jobs"]} == {"completed"}
    assert jobs["depth_by_state"]["completed"] >= len(jobs["jobs"])
    text = op.ok("jobs", "--repository", path, "--state", "completed")
    assert text.splitlines()[0].startswith("queue: ready=")
    assert text.splitlines()[1].split()[:3] == ["ID", "REPOSITORY", "CHANGE"]
    assert all(path in line for line in text.splitlines()[2:])
    assert (
        op.refused("jobs", "--repository", "no/such.git")
        == "gitraft jobs: repository not found: 'no/such.git'"
    )


def test_set_replication_factor_down_and_up(op: Operator, tmp_path: Path) -> None:
    cluster = op.cluster
    path, _ = new_repository(cluster, tmp_path / "w")
    answer = op.json("set-replication-factor", path, "2")
    repo = answer["repository"]
    assert repo["replication_factor"] == 2 and len(answer["unassigned"]) == 1 and answer["assigned"] == []
    gone = answer["unassigned"][0]
    assert gone != repo["primary"] and gone not in [r["storage"] for r in repo["replicas"]]
    on_disk = cluster.layout.node(gone).storage_path / repo["replica_path"]
    cluster.wait_until(lambda: not on_disk.exists(), 60, what=f"the replica on {gone} deleted")

    text = op.ok("set-replication-factor", path, "3")
    assert text.splitlines()[0].startswith(f"{path}: replication factor 3:")
    assert text.splitlines()[1] == f"assigned: {gone} (replicated from an up-to-date replica)"
    converged = cluster.wait_converged(path)
    assert sorted(converged.checksums) == ["node-a", "node-b", "node-c"]
    assert "unchanged" in op.ok("set-replication-factor", path, "3")
    assert "exceeds the 3 storages" in op.refused("set-replication-factor", path, "4")


def test_remove_repository_dry_run_then_apply(op: Operator, tmp_path: Path) -> None:
    cluster = op.cluster
    path, _ = new_repository(cluster, tmp_path / "w")
    text = op.ok("remove-repository", path)
    assert text.splitlines()[0].startswith(f"would remove {path} (id ")
    assert "dry run: nothing changed" in text
    assert op.json("remove-repository", path)["removed"] is False
    (repo,) = op.json("repos", path)["repositories"]  # still there

    answer = op.json("remove-repository", path, "--apply")
    assert answer["removed"] is True and answer["repository"]["repository_id"] == repo["repository_id"]
    assert op.refused("repos", path) == f"gitraft repos: repository not found: {path!r}"
    replicas = [
        cluster.layout.node(n).storage_path / repo["replica_path"] for n in ("node-a", "node-b", "node-c")
    ]
    cluster.wait_until(lambda: not any(p.exists() for p in replicas), 60, what="every replica deleted")
    assert op.refused("remove-repository", path, "--apply").endswith(f"repository not found: {path!r}")


def test_track_repository_adopts_a_bare_repository_copied_onto_a_node(op: Operator, tmp_path: Path) -> None:
    cluster = op.cluster
    work = init_work_tree(tmp_path / "w")
    commit_file(work, "a.txt", "one\n")
    head = commit_file(work, "b.txt", "two\n")
    run_git("tag", "v1", cwd=work)
    storage = cluster.layout.node("node-b").storage_path
    bare = storage / "imported" / "project.git"
    run_git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)

    untracked = op.json("list-untracked-repositories")
    assert {"storage": "node-b", "relative_path": "imported/project.git"} in untracked["repositories"]
    assert untracked["errors"] == {}
    text = op.ok("list-untracked-repositories")
    assert any(line.split() == ["node-b", "imported/project.git"] for line in text.splitlines())

    assert "no repository at 'imported/nothing.git'" in op.refused(
        "track-repository", "imported/nothing.git", "--authoritative-storage", "node-b"
    )
    assert "unknown storage: 'node-x'" in op.refused(
        "track-repository", "imported/project.git", "--authoritative-storage", "node-x"
    )
    text = op.ok("track-repository", "imported/project.git", "--authoritative-storage", "node-b")
    assert text.startswith("tracked imported/project.git: primary node-b; replicas being created on ")
    assert "already tracked" in op.refused(
        "track-repository", "imported/project.git", "--authoritative-storage", "node-b"
    )
    cluster.wait_converged("imported/project.git")
    for proxy in ("proxy-1", "proxy-2", "proxy-3"):
        clone = tmp_path / f"clone-{proxy}"
        run_git("clone", "-q", cluster.git_url(proxy, "imported/project"), str(clone), cwd=tmp_path)
        assert run_git("rev-parse", "HEAD", cwd=clone).stdout.strip() == head
        assert run_git("tag", cwd=clone).stdout.split() == ["v1"]
    listed = op.json("list-untracked-repositories")["repositories"]
    assert not [r for r in listed if r["relative_path"] == "imported/project.git"]

    # A directory without `.git`: its client path gets one (the git gateway's naming).
    run_git("clone", "-q", "--bare", str(work), str(storage / "imported" / "plain"), cwd=tmp_path)
    tracked = op.json("track-repository", "imported/plain", "--authoritative-storage", "node-b")["repository"]
    assert (tracked["relative_path"], tracked["replica_path"]) == ("imported/plain.git", "imported/plain")
    cluster.wait_converged("imported/plain.git")
    assert remote_refs(cluster.git_url("proxy-3", "imported/plain"), tmp_path)["refs/heads/main"] == head


class PushLoop:
    """Pushes a new commit to a new branch through proxy-1, one after another, until
    stopped; remembers every acknowledged push (git exited 0). While `go` is clear no
    new push starts (one in flight finishes)."""

    def __init__(self, cluster: LocalCluster, path: str, work: Path) -> None:
        self.url = cluster.git_url("proxy-1", path)
        self.work = work
        self.acked: dict[str, str] = {}
        self.failed = 0
        self.stop = threading.Event()
        self.go = threading.Event()
        self.go.set()
        self.holds = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in itertools.count():
            while not self.go.wait(0.1):
                if self.stop.is_set():
                    return
            if self.stop.is_set():
                return
            oid = commit_file(self.work, f"f{i}.txt", f"{i}\n")
            done = run_git("push", "-q", self.url, f"{oid}:refs/heads/push-{i}", cwd=self.work, check=False)
            if done.returncode == 0:
                self.acked[f"refs/heads/push-{i}"] = oid
            else:
                self.failed += 1

    def wait_more(self, n: int, timeout: float = 60.0) -> None:
        want = len(self.acked) + n
        deadline = time.monotonic() + timeout
        while len(self.acked) < want:
            assert time.monotonic() < deadline, f"pushes stalled at {len(self.acked)} ({self.failed} failed)"
            time.sleep(0.05)


def failover(op: Operator, path: str, to: str, as_json: bool, loop: PushLoop, timeout: float = 120.0) -> str:
    """Run `gitraft failover` until it moves the primary to `to`; only a refusal for an
    outdated target (replication lagging behind the pushes) and "cluster unavailable"
    (exit 3: e.g. a Raft command timed out on a loaded machine) are retried, as an
    operator would. Returns stdout.

    On a loaded machine the target can stay one push behind for as long as the pushes
    go on (a failover was refused for 60 s at load 30): after 10 s of refusals, `loop`
    starts no new push until the failover is done (the push in flight, if any, still
    races it), as an operator would pause writers."""
    start = time.monotonic()
    args = ("failover", path, "--to", to, *(("--json",) if as_json else ()))
    try:
        while True:
            done = op.run(*args)
            if done.returncode == 0:
                return done.stdout
            assert done.returncode == 3 or (done.returncode == 4 and "is outdated" in done.stderr), (
                done.stderr
            )
            waited = time.monotonic() - start
            assert waited < timeout, f"failover to {to} kept being refused: {done.stderr}"
            if waited > 10 and loop.go.is_set():
                loop.go.clear()
                loop.holds += 1
            time.sleep(0.1)
    finally:
        loop.go.set()


def test_failover_while_a_client_pushes_keeps_every_acknowledged_push(op: Operator, tmp_path: Path) -> None:
    cluster = op.cluster
    path, _ = new_repository(cluster, tmp_path / "w", "failover")
    loop = PushLoop(cluster, path, tmp_path / "w")
    loop.thread.start()
    try:
        loop.wait_more(2)
        (repo,) = op.json("repos", path)["repositories"]
        first, second = sorted(r["storage"] for r in repo["replicas"] if r["storage"] != repo["primary"])
        moved = json.loads(failover(op, path, first, as_json=True, loop=loop))
        assert moved["previous_primary"] == repo["primary"] and moved["repository"]["primary"] == first
        assert moved["overwritten"] == []
        loop.wait_more(2)
        # The previous primary may not be `first` any more: a push in flight on the old
        # primary when it moved lands there, and the elector moves the primary back.
        text = failover(op, path, second, as_json=False, loop=loop)
        assert re.fullmatch(rf"{re.escape(path)}: primary node-[abc] -> {second}\n", text), text
        loop.wait_more(2)
    finally:
        loop.stop.set()
        loop.thread.join(120)
    assert not loop.thread.is_alive()
    cluster.wait_converged(path)
    for proxy in ("proxy-1", "proxy-2", "proxy-3"):
        refs = remote_refs(cluster.git_url(proxy, path.removesuffix(".git")), tmp_path)
        missing = {ref: oid for ref, oid in loop.acked.items() if refs.get(ref) != oid}
        assert not missing, f"acknowledged pushes missing through {proxy}: {missing}"
    print(f"{len(loop.acked)} pushes acknowledged, {loop.failed} refused, pushes held {loop.holds} times")


def test_failover_refusals_and_accept_dataloss_on_a_healthy_repository(op: Operator, tmp_path: Path) -> None:
    path, _ = new_repository(op.cluster, tmp_path / "w")
    (repo,) = op.json("repos", path)["repositories"]
    assert "holds no replica" in op.refused("failover", path, "--to", "node-x")
    assert op.refused("failover", "no/such.git", "--to", "node-a").endswith(
        "repository not found: 'no/such.git'"
    )
    text = op.ok("failover", path, "--to", repo["primary"])  # already there: a no-op
    assert text.strip() == f"{path}: primary {repo['primary']} -> {repo['primary']}"
    assert "holds no replica" in op.refused("accept-dataloss", path, "--authoritative-storage", "node-x")
    # Accepting a replica of a healthy repository: it becomes the newest, the others follow.
    other = next(r["storage"] for r in repo["replicas"] if r["storage"] != repo["primary"])
    lines = op.ok("accept-dataloss", path, "--authoritative-storage", other).splitlines()
    assert lines[0] == f"{path}: {other} is authoritative at generation {repo['generation'] + 1}"
    assert lines[1] == "overwritten from it: " + ", ".join(
        sorted(r["storage"] for r in repo["replicas"] if r["storage"] != other)
    )
    assert lines[2].split()[:2] == ["REPOSITORY", "PRIMARY"]
    converged = op.cluster.wait_converged(path)
    assert converged.generation == repo["generation"] + 1


def test_symptoms_a_node_down_and_a_proxy_out_of_quorum(op: Operator) -> None:
    """What the README's operator guide says an operator sees (then all is restored)."""
    cluster = op.cluster
    cluster.stop("node-c")
    try:
        cluster.wait_health({"node-c": False})
        done = op.run("status")
        assert done.returncode == 1
        assert done.stdout.startswith(
            "DEGRADED: node node-c down - run 'gitraft dataloss --partially-unavailable'"
        ), done.stdout
        node_c = next(line for line in done.stdout.splitlines() if line.startswith("node-c "))
        assert node_c.split()[1] == "DOWN" and "unknown" in node_c
        done = op.run("check")
        assert done.returncode == 1
        assert any(
            line.startswith("FAIL") and "node node-c" in line and "unreachable" in line
            for line in done.stdout.splitlines()
        ), done.stdout
    finally:
        cluster.start_process("node-c")
    cluster.wait_health({"node-c": True})

    cluster.stop("proxy-3")
    try:
        cluster.wait_until(
            lambda: op.run("status").stdout.startswith("DEGRADED: proxy proxy-3 out of quorum"),
            30,
            what="status names proxy-3",
        )
        status = op.json("status", code=1)
        assert {p["name"]: p["reachable"] for p in status["proxies"]}["proxy-3"] is False
        check = op.json("check", code=1)
        failed = {c["name"]: c["detail"] for c in check["checks"] if c["ok"] is False}
        assert failed["raft peers"] == "not connected: proxy-3", failed
        assert failed[f"proxy {cluster.proxies['proxy-3'].address}"] == "unreachable"
    finally:
        cluster.start_process("proxy-3")
    cluster.wait_until(lambda: op.run("status").returncode == 0, 60, what="status OK again")


def test_verify_finds_a_ref_changed_by_hand_and_the_replica_is_repaired(op: Operator, tmp_path: Path) -> None:
    cluster = op.cluster
    path, oid = new_repository(cluster, tmp_path / "w")
    repo = cluster.repository(path)
    assert repo is not None
    secondary = next(r.storage for r in repo.replicas if r.storage != repo.primary)
    expected = cluster.replica_checksum(repo.primary, repo.replica_path)
    git_dir = cluster.nodes[secondary].storage_path / repo.replica_path
    run_git("update-ref", "refs/heads/rogue", oid, cwd=git_dir)
    assert cluster.replica_checksum(secondary, repo.replica_path) != expected

    done = op.run("verify", path, "--json")
    assert done.returncode == 1, done.stderr  # a mismatch needs attention
    report = json.loads(done.stdout)
    (verified,) = report["repositories"]
    assert verified["relative_path"] == path and report["mismatches"] >= 1
    rows = {r["storage"]: r for r in verified["replicas"]}
    assert rows[secondary]["matches"] is False and rows[repo.primary]["matches"] is True
    assert secondary in verified["repairs_scheduled"]

    cluster.wait_until(
        lambda: cluster.replica_checksum(secondary, repo.replica_path) == expected,
        60,
        f"{secondary} repaired",
    )
    cluster.wait_converged(path)
    text = op.ok("verify", path)  # exit 0: every replica matches again
    assert path in text and "MISMATCH" not in text
    assert op.json("jobs", "retry", "--dead") == {"retried": []}  # nothing dead to retry
