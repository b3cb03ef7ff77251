"""RefService on a real node process, checked against `git for-each-ref` on the same disk."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from gitraft.v1 import ref_pb2 as pb
from gitraft.v1 import ref_pb2_grpc, shared_pb2
from tests.integration.conftest import NewRepo, git_cli

ZERO = "0" * 40


@pytest.fixture
def stub(node_stub: Callable[[type], Any]) -> Any:
    return node_stub(ref_pb2_grpc.RefServiceStub)


@pytest.fixture
def pushed(new_repo: NewRepo, work_tree: Path) -> tuple[shared_pb2.Repository, Path, Path]:
    """A repository holding work_tree's main, a branch `feature` at main~1, tag v1."""
    repo, path = new_repo()
    git_cli("branch", "feature", "HEAD~1", cwd=work_tree)
    git_cli("tag", "-a", "v1", "-m", "v1", "HEAD~2", cwd=work_tree)
    git_cli("push", "-q", str(path), "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*", cwd=work_tree)
    return repo, path, work_tree


def for_each_ref(path: Path, *patterns: str) -> list[tuple[str, str]]:
    out = git_cli("for-each-ref", "--format=%(refname) %(objectname)", *patterns, cwd=path)
    return [(name, oid) for name, oid in (line.split() for line in out.splitlines())]


def list_refs(stub: Any, repo: shared_pb2.Repository, **kwargs: Any) -> tuple[list[pb.Ref], int]:
    responses = list(stub.ListRefs(pb.ListRefsRequest(repository=repo, **kwargs)))
    return [ref for r in responses for ref in r.refs], len(responses)


def update(stub: Any, repo: shared_pb2.Repository, *updates: tuple[str, str, str]) -> None:
    items = [pb.ReferenceUpdate(ref=r, old_oid=o, new_oid=n) for r, o, n in updates]
    stub.UpdateReferences(pb.UpdateReferencesRequest(repository=repo, updates=items))


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def rev(path: Path, revision: str) -> str:
    return git_cli("rev-parse", revision, cwd=path).strip()


def test_list_refs_matches_for_each_ref(stub: Any, pushed: tuple[Any, Path, Path]) -> None:
    repo, path, _ = pushed
    refs, _ = list_refs(stub, repo)
    assert [(r.name, r.target) for r in refs] == for_each_ref(path)
    assert len(refs) == 3
    tags, _ = list_refs(stub, repo, patterns=["refs/tags/"])
    assert [(r.name, r.target) for r in tags] == for_each_ref(path, "refs/tags/")
    assert tags[0].target == rev(path, "refs/tags/v1")  # the tag object, not peeled


def test_list_refs_with_head(stub: Any, pushed: tuple[Any, Path, Path], new_repo: NewRepo) -> None:
    repo, path, _ = pushed
    refs, _ = list_refs(stub, repo, head=True, patterns=["refs/heads/"])
    head = refs[0]
    assert (head.name, head.symbolic_target, head.target) == ("HEAD", "refs/heads/main", rev(path, "HEAD"))
    assert [r.name for r in refs[1:]] == ["refs/heads/feature", "refs/heads/main"]
    empty, _ = new_repo()
    refs, _ = list_refs(stub, empty, head=True)
    assert [(r.name, r.symbolic_target, r.target) for r in refs] == [("HEAD", "refs/heads/main", "")]


def test_list_refs_streams_many_refs_in_batches(stub: Any, pushed: tuple[Any, Path, Path]) -> None:
    repo, path, _ = pushed
    head = rev(path, "HEAD")
    script = "".join(f"create refs/keep/{i:04d} {head}\n" for i in range(250))
    git_cli("update-ref", "--stdin", cwd=path, stdin=script)
    git_cli("pack-refs", "--all", cwd=path)
    refs, messages = list_refs(stub, repo)
    assert [(r.name, r.target) for r in refs] == for_each_ref(path)
    assert len(refs) == 253 and messages == 3


def test_find_default_branch(stub: Any, pushed: tuple[Any, Path, Path], new_repo: NewRepo) -> None:
    repo, path, _ = pushed
    found = stub.FindDefaultBranch(pb.FindDefaultBranchRequest(repository=repo))
    assert (found.name, found.target) == ("refs/heads/main", rev(path, "main"))
    unborn, _ = new_repo(default_branch="trunk")
    found = stub.FindDefaultBranch(pb.FindDefaultBranchRequest(repository=unborn))
    assert (found.name, found.target) == ("refs/heads/trunk", "")


def test_update_create_move_delete_in_one_transaction(stub: Any, pushed: tuple[Any, Path, Path]) -> None:
    repo, path, _ = pushed
    main, feature = rev(path, "main"), rev(path, "feature")
    update(
        stub,
        repo,
        ("refs/heads/new", ZERO, main),
        ("refs/heads/main", main, feature),
        ("refs/heads/feature", feature, ZERO),
        ("refs/tags/any", "", main),
    )
    assert for_each_ref(path) == [
        ("refs/heads/main", feature),
        ("refs/heads/new", main),
        ("refs/tags/any", main),
        ("refs/tags/v1", rev(path, "v1")),
    ]


def test_update_is_all_or_none_on_old_value_mismatch(stub: Any, pushed: tuple[Any, Path, Path]) -> None:
    repo, path, _ = pushed
    main, feature = rev(path, "main"), rev(path, "feature")
    before = for_each_ref(path)
    for wrong in (
        ("refs/heads/main", feature, main),  # main is not at feature
        ("refs/heads/feature", ZERO, main),  # feature must not exist, but does
        ("refs/heads/ghost", main, feature),  # ghost does not exist at all
        ("refs/heads/feature", main, ZERO),  # delete expecting the wrong value
    ):
        call = lambda w=wrong: update(stub, repo, ("refs/heads/fresh", ZERO, main), w)  # noqa: E731
        assert code_of(call) == grpc.StatusCode.FAILED_PRECONDITION, wrong
        assert for_each_ref(path) == before


@pytest.mark.parametrize(
    ("ref", "old", "new"),
    [
        ("refs/heads/a..b", "", "MAIN"),
        ("refs/heads/x.lock", "", "MAIN"),
        ("refs/heads/sp ace", "", "MAIN"),
        ("refs/heads/ctl\x01", "", "MAIN"),
        ("HEAD", "", "MAIN"),
        ("heads/main", "", "MAIN"),
        ("refs/heads/ok", "", "not-hex"),
        ("refs/heads/ok", "", "abc123"),
        ("refs/heads/ok", "xyz", "MAIN"),
        ("refs/heads/ok", "", ""),
        ("refs/heads/ok", "", "1" * 40),  # well formed, but no such object
        ("refs/heads/ok", "", "TREE"),  # a branch must point at a commit
        ("refs/heads/main", ZERO, ZERO),
    ],
)
def test_update_refuses_bad_names_and_oids(
    stub: Any, pushed: tuple[Any, Path, Path], ref: str, old: str, new: str
) -> None:
    repo, path, _ = pushed
    values = {"MAIN": rev(path, "main"), "TREE": rev(path, "main^{tree}")}
    before = for_each_ref(path)
    call = lambda: update(stub, repo, (ref, old, values.get(new, new)))  # noqa: E731
    assert code_of(call) == grpc.StatusCode.INVALID_ARGUMENT
    assert for_each_ref(path) == before


def test_update_refuses_duplicates_conflicts_and_empty(stub: Any, pushed: tuple[Any, Path, Path]) -> None:
    repo, path, _ = pushed
    main = rev(path, "main")
    twice = lambda: update(stub, repo, ("refs/heads/d", "", main), ("refs/heads/d", "", main))  # noqa: E731
    assert code_of(twice) == grpc.StatusCode.INVALID_ARGUMENT
    nested = lambda: update(stub, repo, ("refs/heads/n", "", main), ("refs/heads/n/x", "", main))  # noqa: E731
    assert code_of(nested) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: update(stub, repo)) == grpc.StatusCode.INVALID_ARGUMENT
    under_existing = lambda: update(stub, repo, ("refs/heads/main/x", "", main))  # noqa: E731
    assert code_of(under_existing) == grpc.StatusCode.FAILED_PRECONDITION


def test_update_runs_the_reference_transaction_hook(stub: Any, pushed: tuple[Any, Path, Path]) -> None:
    repo, path, _ = pushed
    log = path / "hook.log"
    hook = path / "hooks" / "reference-transaction"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f'#!/bin/sh\n{{ echo "$1"; cat; }} >> "{log}"\n')
    hook.chmod(0o755)
    main, feature = rev(path, "main"), rev(path, "feature")
    update(stub, repo, ("refs/heads/main", main, feature))
    lines = [f"{main} {feature} refs/heads/main", f"{main} {feature} HEAD"]  # HEAD follows main
    assert log.read_text().splitlines() == ["prepared", *lines, "committed", *lines]


def test_missing_repository_and_bad_path(stub: Any) -> None:
    missing = shared_pb2.Repository(relative_path="tests/none.git")
    bad = shared_pb2.Repository(relative_path="../up.git")
    for repo, code in ((missing, grpc.StatusCode.NOT_FOUND), (bad, grpc.StatusCode.INVALID_ARGUMENT)):
        assert code_of(lambda r=repo: list_refs(stub, r)) == code
        find = pb.FindDefaultBranchRequest(repository=repo)
        assert code_of(lambda f=find: stub.FindDefaultBranch(f)) == code
        assert code_of(lambda r=repo: update(stub, r, ("refs/heads/x", "", "a" * 40))) == code


def test_concurrent_compare_and_swap_has_one_winner(stub: Any, pushed: tuple[Any, Path, Path]) -> None:
    repo, path, _ = pushed
    main, feature = rev(path, "main"), rev(path, "feature")

    def swap(i: int) -> grpc.StatusCode:
        """Move main from `main` to `feature` and record the winner, in one transaction."""
        try:
            update(stub, repo, ("refs/heads/main", main, feature), (f"refs/heads/won-{i}", ZERO, main))
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(swap, range(6)))
    assert codes.count(grpc.StatusCode.OK) == 1
    losers = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE}
    assert set(codes) - {grpc.StatusCode.OK} <= losers
    winners = [name for name, _ in for_each_ref(path, "refs/heads/won-*")]
    assert winners == [f"refs/heads/won-{codes.index(grpc.StatusCode.OK)}"]
    assert rev(path, "main") == feature
