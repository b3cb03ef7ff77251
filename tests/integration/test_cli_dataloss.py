"""Data loss end to end, through the real `gitraft` executable on a real cluster.

Replication is held back by stopping node-b and node-c; a push lands on node-a only
(acknowledged), then node-a is SIGKILLed and node-b, node-c come back outdated. The
repositories are then refused - reads and writes - with an error naming node-a;
`gitraft status` says DEGRADED and names `gitraft dataloss`, which lists them with each
replica's generation. One repository is recovered with `accept-dataloss`, the other
with `failover --force`; both take writes again, and node-a, restarted, is brought in
line with the accepted state (every replica's checksum equal, node-a's lost commit
gone from it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import LocalCluster, commit_file, init_work_tree, remote_refs, run_git
from tests.integration.cli_helpers import Operator


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("dataloss"), proxies=3, nodes=3) as c:
        yield c


def push(cluster: LocalCluster, proxy: str, path: str, work: Path, check: bool = True) -> str:
    done = run_git("push", "-q", cluster.git_url(proxy, path), "HEAD:refs/heads/main", cwd=work, check=check)
    return done.stderr


def test_data_loss_is_reported_refused_and_recovered(cluster: LocalCluster, tmp_path: Path) -> None:
    op = Operator(cluster, tmp_path / "operator")
    # Both repositories get their primary on node-a, through the CLI.
    works = {name: init_work_tree(tmp_path / name) for name in ("accept", "force")}
    for name, work in works.items():
        commit_file(work, "a.txt", f"{name} one\n")
        push(cluster, "proxy-1", f"loss/{name}", work)
    for name in works:
        cluster.wait_converged(f"loss/{name}")
        op.ok("failover", f"loss/{name}.git", "--to", "node-a")

    # Hold back replication, write on node-a only, lose node-a.
    cluster.stop("node-b")
    cluster.stop("node-c")
    cluster.wait_health({"node-b": False, "node-c": False})
    lost = {}
    for name, work in works.items():
        lost[name] = commit_file(work, "a.txt", f"{name} two (only on node-a)\n")
        push(cluster, "proxy-1", f"loss/{name}", work)
    cluster.kill("node-a")
    cluster.start_process("node-b")
    cluster.start_process("node-c")
    cluster.wait_health({"node-a": False, "node-b": True, "node-c": True})

    # Refused, reads too, naming the missing storage.
    clone = run_git(
        "clone",
        "-q",
        cluster.git_url("proxy-2", "loss/accept"),
        str(tmp_path / "c"),
        cwd=tmp_path,
        check=False,
    )
    assert clone.returncode != 0 and "node-a" in clone.stderr, clone.stderr
    commit_file(works["accept"], "b.txt", "refused\n")
    refused = push(cluster, "proxy-3", "loss/accept", works["accept"], check=False)
    assert "node-a" in refused and "unavailable" in refused, refused
    run_git("reset", "-q", "--hard", "HEAD~1", cwd=works["accept"])

    done = op.run("status")
    first = done.stdout.splitlines()[0]
    assert done.returncode == 1
    assert first.startswith("DEGRADED: 2 repositories unavailable") and "'gitraft dataloss'" in first, first
    status = op.json("status", code=1)
    assert status["ok"] is False and status["unavailable_repositories"] == 2
    assert {n["storage"]: n["healthy"] for n in status["nodes"]} == {
        "node-a": False,
        "node-b": True,
        "node-c": True,
    }

    text = op.ok("dataloss")
    assert text.startswith("2 repositories unavailable")
    row = next(line for line in text.splitlines() if line.startswith("loss/accept.git"))
    assert "node-a=2(down) node-b=1(outdated) node-c=1(outdated)" in row, text
    assert "gitraft accept-dataloss loss/accept.git --authoritative-storage node-b" in text
    unavailable = {r["relative_path"]: r for r in op.json("dataloss")["unavailable"]}
    assert sorted(unavailable) == ["loss/accept.git", "loss/force.git"]
    generations = {
        r["storage"]: (r["generation"], r["healthy"]) for r in unavailable["loss/accept.git"]["replicas"]
    }
    assert generations == {"node-a": (2, False), "node-b": (1, True), "node-c": (1, True)}

    # Recover: accept the loss on one, force a failover on the other.
    assert "holds no replica" in op.refused(
        "accept-dataloss", "loss/accept.git", "--authoritative-storage", "nope"
    )
    accepted = op.json("accept-dataloss", "loss/accept.git", "--authoritative-storage", "node-b")
    assert accepted["overwritten"] == ["node-a", "node-c"]
    assert {r["storage"]: r["generation"] for r in accepted["repository"]["replicas"]}["node-b"] == 3
    assert "is outdated" in op.refused("failover", "loss/force.git", "--to", "node-c")
    forced = op.run("failover", "loss/force.git", "--to", "node-c", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == "loss/force.git: primary node-a -> node-c"
    assert "warning: writes held only by node-a are lost" in forced.stderr

    # Writable again; node-a's lost commit is not there.
    for name, work in works.items():
        run_git("reset", "-q", "--hard", "HEAD~1", cwd=work)
        commit_file(work, "c.txt", f"{name} after recovery\n")
        cluster.wait_until(
            lambda w=work, n=name: push(cluster, "proxy-2", f"loss/{n}", w, check=False) == "" or None,
            60,
            what=f"loss/{name} writable again",
        )
        refs = remote_refs(cluster.git_url("proxy-3", f"loss/{name}"), tmp_path)
        assert refs["refs/heads/main"] == run_git("rev-parse", "HEAD", cwd=work).stdout.strip()
    degraded = op.run("status")
    assert degraded.returncode == 1 and degraded.stdout.startswith("DEGRADED: node node-a down"), (
        degraded.stdout
    )

    # node-a returns and is brought in line with the accepted state.
    cluster.start_process("node-a")
    for name in works:
        converged = cluster.wait_converged(f"loss/{name}")
        assert sorted(converged.checksums) == ["node-a", "node-b", "node-c"]
        replica = cluster.layout.node("node-a").storage_path / converged.repository.replica_path
        main = run_git("--git-dir", str(replica), "rev-parse", "refs/heads/main", cwd=tmp_path).stdout.strip()
        assert main != lost[name]
    cluster.wait_health({"node-a": True})
    assert op.ok("status").startswith("OK: ")
    assert op.json("dataloss", "--partially-unavailable") == {"unavailable": [], "partially_available": []}
