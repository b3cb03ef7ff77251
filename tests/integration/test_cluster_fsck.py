"""The fsck policy (node.fsck) through the whole cluster, with the stock git client.

- A history made of legacy quirks (zero-padded file modes, bad time zones, missing
  spaces, overflowing dates...) is accepted by a push through proxy-1, cloned back
  byte-identical through proxy-2, and replicated (replication fetches check objects
  with the same policy) until every replica has the same checksum.
- Each dangerous object (`.git` in a tree, `.gitmodules` URL/path/name injection, a
  symlinked `.gitmodules`, a null object id) is refused: git reports
  `! [remote rejected]` and the reason (the fsck message id), and no ref changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import LocalCluster, init_work_tree, remote_refs, run_git
from tests.integration.git_objects import LEGACY_IDENTS, dangerous_commits, legacy_history


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster"), proxies=2, nodes=3) as c:
        yield c


def test_a_history_with_legacy_quirks_is_accepted_cloned_and_replicated(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    path = "imports/legacy"
    work = init_work_tree(tmp_path / "work")
    quirks = legacy_history(work)
    # The stock client's own strict check finds each quirk where it was put.
    findings = run_git("fsck", "--strict", cwd=work, check=False).stderr
    for msg_id in (*LEGACY_IDENTS, "multipleAuthors", "nulInCommit"):
        assert f"{quirks[msg_id]}: {msg_id}:" in findings, (msg_id, findings)
    assert ": zeroPaddedFilemode:" in findings

    pushed = run_git("push", cluster.git_url("proxy-1", path), "main", "v-legacy", cwd=work, check=False)
    assert pushed.returncode == 0, pushed.stderr

    clone = tmp_path / "clone"
    run_git("clone", "-q", cluster.git_url("proxy-2", path), str(clone), cwd=tmp_path)
    refs = remote_refs(cluster.git_url("proxy-2", path), tmp_path)
    assert refs["refs/heads/main"] == quirks["nulInCommit"]
    assert refs["refs/tags/v-legacy"] == quirks["missingTaggerEntry"]
    for msg_id, oid in quirks.items():
        original = run_git("cat-file", "-p", oid, cwd=work).stdout
        assert run_git("cat-file", "-p", oid, cwd=clone).stdout == original, msg_id
    assert (clone / "dir" / "f.txt").read_text() == "nested\n"

    converged = cluster.wait_converged(path)
    assert len(converged.checksums) == 3


def test_each_dangerous_object_is_rejected_with_its_reason(cluster: LocalCluster, tmp_path: Path) -> None:
    path = "imports/hostile"
    work = init_work_tree(tmp_path / "work")
    run_git("commit", "-q", "--allow-empty", "-m", "clean", cwd=work)
    url = cluster.git_url("proxy-1", path)
    run_git("push", "-q", url, "main", cwd=work)
    before = remote_refs(url, tmp_path)

    for msg_id, oid in dangerous_commits(work).items():
        branch = "hostile-" + msg_id.split(" ")[0]
        pushed = run_git("push", url, f"{oid}:refs/heads/{branch}", cwd=work, check=False)
        assert pushed.returncode != 0, msg_id
        assert f"! [remote rejected] {oid} -> {branch}" in pushed.stderr, pushed.stderr
        assert f"{msg_id.split(' ')[0]}:" in pushed.stderr, pushed.stderr
        assert remote_refs(cluster.git_url("proxy-2", path), tmp_path) == before, msg_id

    converged = cluster.wait_converged(path)
    assert len(converged.checksums) == 3
