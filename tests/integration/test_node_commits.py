"""CommitService on a real node process, checked against `git rev-list` / `git cat-file`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from gitraft.v1 import commit_pb2 as pb
from gitraft.v1 import commit_pb2_grpc, shared_pb2
from tests.integration.conftest import NewRepo, commit_file, git_cli

Pushed = tuple[shared_pb2.Repository, Path]
BIG = os.urandom(200 * 1024 + 123)  # spans four 64 KiB chunks


@pytest.fixture
def stub(node_stub: Callable[[type], Any]) -> Any:
    return node_stub(commit_pb2_grpc.CommitServiceStub)


@pytest.fixture
def pushed(new_repo: NewRepo, work_tree: Path) -> Pushed:
    """work_tree plus a merge, a big binary file, a tag, pushed into a new repository.

    The merge is dated by the wall clock, so it is newer than the commit on top of it:
    git's history order then differs from a plain sort by date, as it does in the wild.
    """
    git_cli("checkout", "-q", "-b", "side", "HEAD~1", cwd=work_tree)
    commit_file(work_tree, "side.txt", "side\n", "on side")
    git_cli("checkout", "-q", "main", cwd=work_tree)
    git_cli("merge", "-q", "--no-ff", "-m", "merge side", "side", cwd=work_tree)
    commit_file(work_tree, "bin/big.dat", BIG, "big file")
    git_cli("tag", "-a", "v1", "-m", "tag v1", "HEAD~1", cwd=work_tree)
    repo, path = new_repo()
    git_cli("push", "-q", str(path), "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*", cwd=work_tree)
    return repo, path


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def cat(path: Path, *args: str) -> str:
    return git_cli("cat-file", *args, cwd=path)


def test_find_commit_matches_git(stub: Any, pushed: Pushed) -> None:
    repo, path = pushed
    commit = stub.FindCommit(pb.FindCommitRequest(repository=repo, revision="v1")).commit
    oid = git_cli("rev-parse", "v1^{commit}", cwd=path).strip()
    fields = git_cli("log", "-1", "--format=%T%n%P%n%an%n%ae%n%at%n%ct%n%s", oid, cwd=path).splitlines()
    assert commit.id == oid
    assert [commit.tree_id, " ".join(commit.parent_ids), commit.author.name, commit.author.email] == fields[
        :4
    ]
    assert [str(commit.author.time), str(commit.committer.time), commit.subject] == fields[4:]
    assert len(commit.parent_ids) == 2 and commit.subject == "merge side"
    assert commit.message.decode() == cat(path, "commit", oid).split("\n\n", 1)[1]


def test_find_commit_errors(stub: Any, pushed: Pushed) -> None:
    repo, path = pushed
    blob = git_cli("rev-parse", "main:a.txt", cwd=path).strip()
    cases = {
        "": grpc.StatusCode.INVALID_ARGUMENT,
        "--all": grpc.StatusCode.INVALID_ARGUMENT,
        "main..": grpc.StatusCode.INVALID_ARGUMENT,
        "HEAD@{": grpc.StatusCode.INVALID_ARGUMENT,
        "no-such-branch": grpc.StatusCode.NOT_FOUND,
        "main~50": grpc.StatusCode.NOT_FOUND,
        "1" * 40: grpc.StatusCode.NOT_FOUND,
        blob: grpc.StatusCode.NOT_FOUND,  # resolves, but not to a commit
    }
    for revision, code in cases.items():
        req = pb.FindCommitRequest(repository=repo, revision=revision)
        assert code_of(lambda r=req: stub.FindCommit(r)) == code, revision
    missing = shared_pb2.Repository(relative_path="tests/none.git")
    code = code_of(lambda: stub.FindCommit(pb.FindCommitRequest(repository=missing, revision="HEAD")))
    assert code == grpc.StatusCode.NOT_FOUND


def test_list_commits_pages_through_rev_list(stub: Any, pushed: Pushed) -> None:
    repo, path = pushed
    expected = git_cli("rev-list", "main", cwd=path).split()
    assert len(expected) == 6
    seen: list[str] = []
    token, pages = "", 0
    while True:
        page = stub.ListCommits(
            pb.ListCommitsRequest(repository=repo, revision="main", limit=4, page_token=token)
        )
        seen += [c.id for c in page.commits]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert (seen, pages) == (expected, 2)
    everything = stub.ListCommits(pb.ListCommitsRequest(repository=repo, revision="main"))
    assert [c.id for c in everything.commits] == expected and not everything.next_page_token


def test_list_commits_token_pins_the_start(stub: Any, pushed: Pushed) -> None:
    repo, path = pushed
    expected = git_cli("rev-list", "main", cwd=path).split()
    first = stub.ListCommits(pb.ListCommitsRequest(repository=repo, revision="main", limit=2))
    git_cli("update-ref", "refs/heads/main", "main~2", cwd=path)  # the branch moves meanwhile
    rest = stub.ListCommits(pb.ListCommitsRequest(repository=repo, page_token=first.next_page_token))
    assert [c.id for c in (*first.commits, *rest.commits)] == expected


def test_list_commits_bad_arguments(stub: Any, pushed: Pushed) -> None:
    repo, _ = pushed
    for req in (
        pb.ListCommitsRequest(repository=repo, revision="main", page_token="garbage!"),
        pb.ListCommitsRequest(repository=repo, revision="main", page_token="djE6eHl6OjE="),  # v1:xyz:1
        pb.ListCommitsRequest(repository=repo, revision="main", limit=1_000_000),
        pb.ListCommitsRequest(repository=repo, revision=""),
    ):
        assert code_of(lambda r=req: stub.ListCommits(r)) == grpc.StatusCode.INVALID_ARGUMENT
    req = pb.ListCommitsRequest(repository=repo, revision="nope")
    assert code_of(lambda: stub.ListCommits(req)) == grpc.StatusCode.NOT_FOUND


def tree_entry(stub: Any, repo: shared_pb2.Repository, path: str, limit: int = 0) -> list[Any]:
    req = pb.TreeEntryRequest(repository=repo, revision="main", path=path, limit=limit)
    return list(stub.TreeEntry(req))


def test_tree_entry_streams_a_blob_in_chunks(stub: Any, pushed: Pushed) -> None:
    repo, path = pushed
    messages = tree_entry(stub, repo, "bin/big.dat")
    oid = git_cli("rev-parse", "main:bin/big.dat", cwd=path).strip()
    head = messages[0]
    assert (head.type, head.oid, head.size, head.mode) == (pb.TreeEntryResponse.BLOB, oid, len(BIG), 0o100644)
    assert len(messages) == 4 and all(not m.oid for m in messages[1:])
    assert b"".join(m.data for m in messages) == BIG
    limited = tree_entry(stub, repo, "/bin/big.dat", limit=70_000)
    assert b"".join(m.data for m in limited) == BIG[:70_000] and limited[0].size == len(BIG)
    small = tree_entry(stub, repo, "dir/b.txt")
    assert [m.data for m in small] == [cat(path, "blob", "main:dir/b.txt").encode()]


def test_tree_entry_lists_a_tree(stub: Any, pushed: Pushed) -> None:
    repo, path = pushed
    for entry_path, spec in (("", "main^{tree}"), ("dir", "main:dir")):
        messages = tree_entry(stub, repo, entry_path)
        assert messages[0].type == pb.TreeEntryResponse.TREE and messages[0].mode == 0o40000
        assert messages[0].oid == git_cli("rev-parse", spec, cwd=path).strip()
        listing = [line.split(maxsplit=3) for line in git_cli("ls-tree", spec, cwd=path).splitlines()]
        kinds = {"blob": pb.TreeEntryResponse.BLOB, "tree": pb.TreeEntryResponse.TREE}
        expected = [(name, oid, kinds[kind], int(mode, 8)) for mode, kind, oid, name in listing]
        got = [(c.name, c.oid, c.type, c.mode) for m in messages for c in m.children]
        assert got == expected


def test_tree_entry_errors(stub: Any, pushed: Pushed) -> None:
    repo, _ = pushed
    for entry_path, code in (
        ("nope.txt", grpc.StatusCode.NOT_FOUND),
        ("a.txt/deeper", grpc.StatusCode.NOT_FOUND),
        ("dir/../a.txt", grpc.StatusCode.INVALID_ARGUMENT),
        ("dir//b.txt", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        assert code_of(lambda p=entry_path: tree_entry(stub, repo, p)) == code, entry_path
    assert code_of(lambda: tree_entry(stub, repo, "a.txt", limit=-1)) == grpc.StatusCode.INVALID_ARGUMENT


def test_get_blob(stub: Any, pushed: Pushed) -> None:
    repo, path = pushed
    oid = git_cli("rev-parse", "main:bin/big.dat", cwd=path).strip()
    messages = list(stub.GetBlob(pb.GetBlobRequest(repository=repo, oid=oid)))
    assert (messages[0].oid, messages[0].size) == (oid, len(BIG))
    assert b"".join(m.data for m in messages) == BIG
    limited = list(stub.GetBlob(pb.GetBlobRequest(repository=repo, oid=oid.upper(), limit=10)))
    assert [m.data for m in limited] == [BIG[:10]]
    empty = git_cli("hash-object", "-w", "--stdin", cwd=path, stdin="").strip()
    assert [(m.oid, m.size, m.data) for m in stub.GetBlob(pb.GetBlobRequest(repository=repo, oid=empty))] == [
        (empty, 0, b"")
    ]


def test_get_blob_errors(stub: Any, pushed: Pushed) -> None:
    repo, path = pushed
    tree = git_cli("rev-parse", "main^{tree}", cwd=path).strip()
    for oid, code in (
        ("1" * 40, grpc.StatusCode.NOT_FOUND),
        ("abc", grpc.StatusCode.INVALID_ARGUMENT),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
        (tree, grpc.StatusCode.INVALID_ARGUMENT),
    ):
        req = pb.GetBlobRequest(repository=repo, oid=oid)
        assert code_of(lambda r=req: list(stub.GetBlob(r))) == code, oid
