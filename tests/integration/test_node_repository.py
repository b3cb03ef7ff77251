"""RepositoryService on a real node process, checked against git on the same disk."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from cluster.testing import NodeProcess
from gitraft.v1 import repository_pb2 as pb
from gitraft.v1 import repository_pb2_grpc, shared_pb2
from node.janitor import sweep_at_start
from tests.integration.conftest import NewRepo, commit_file, git_cli


@pytest.fixture
def stub(node_stub: Callable[[type], Any]) -> Any:
    return node_stub(repository_pb2_grpc.RepositoryServiceStub)


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def push(work: Path, path: Path, *refspecs: str) -> None:
    git_cli("push", "-q", str(path), *(refspecs or ("refs/heads/*:refs/heads/*",)), cwd=work)


def test_create_makes_a_bare_repository_with_head_on_default_branch(
    stub: Any, node: NodeProcess, new_repo: NewRepo
) -> None:
    repo, path = new_repo()
    assert git_cli("rev-parse", "--is-bare-repository", cwd=path).strip() == "true"
    assert git_cli("symbolic-ref", "HEAD", cwd=path).strip() == "refs/heads/main"
    assert stub.RepositoryExists(pb.RepositoryExistsRequest(repository=repo)).exists

    _, other_path = new_repo(default_branch="trunk")
    assert git_cli("symbolic-ref", "HEAD", cwd=other_path).strip() == "refs/heads/trunk"
    # No temporary directory is left beside the repositories.
    assert not [p for p in path.parent.iterdir() if "gitraft-tmp" in p.name]
    # What git makes (its template's sample hooks and description aside), byte for byte.
    reference = path.parent.parent / "reference-trunk.git"
    git_cli("init", "-q", "--bare", "--template=", "--initial-branch=trunk", str(reference), cwd=path.parent)
    made = {
        str(p.relative_to(other_path)): p.read_bytes() if p.is_file() else None for p in other_path.rglob("*")
    }
    assert made == {
        str(p.relative_to(reference)): p.read_bytes() if p.is_file() else None for p in reference.rglob("*")
    }


def test_create_twice_is_already_exists(stub: Any, new_repo: NewRepo) -> None:
    repo, _ = new_repo()
    req = pb.CreateRepositoryRequest(repository=repo)
    assert code_of(lambda: stub.CreateRepository(req)) == grpc.StatusCode.ALREADY_EXISTS


def test_create_refuses_a_bad_default_branch(stub: Any, node: NodeProcess) -> None:
    repo = shared_pb2.Repository(relative_path="tests/bad-branch.git")
    for branch in ("a..b", "with space", "-x", "end.lock"):
        req = pb.CreateRepositoryRequest(repository=repo, default_branch=branch)
        assert code_of(lambda req=req: stub.CreateRepository(req)) == grpc.StatusCode.INVALID_ARGUMENT
    assert not (node.storage_path / "tests/bad-branch.git").exists()


# The last one holds the node's temporary marker: before, it was created, acknowledged,
# and deleted by the node's next start (a crash leftover to it).
@pytest.mark.parametrize(
    "bad",
    ["../escape.git", "/abs.git", "a/../../b.git", "ctl\x01.git", "", "-opt.git", "g/.a.git.gitraft-tmp-x"],
)
def test_bad_paths_are_invalid_argument_everywhere(stub: Any, node: NodeProcess, bad: str) -> None:
    repo = shared_pb2.Repository(relative_path=bad)
    calls = [
        lambda: stub.CreateRepository(pb.CreateRepositoryRequest(repository=repo)),
        lambda: stub.RepositoryExists(pb.RepositoryExistsRequest(repository=repo)),
        lambda: stub.RemoveRepository(pb.RemoveRepositoryRequest(repository=repo)),
        lambda: stub.RepositoryInfo(pb.RepositoryInfoRequest(repository=repo)),
        lambda: stub.RepositoryChecksum(pb.RepositoryChecksumRequest(repository=repo)),
        lambda: stub.OptimizeRepository(pb.OptimizeRepositoryRequest(repository=repo)),
    ]
    for call in calls:
        assert code_of(call) == grpc.StatusCode.INVALID_ARGUMENT
    assert not (node.storage_path.parent / "escape.git").exists()


def test_wrong_storage_name_is_invalid_argument(stub: Any, new_repo: NewRepo) -> None:
    repo, _ = new_repo()
    other = shared_pb2.Repository(storage_name="node-z", relative_path=repo.relative_path)
    call = lambda: stub.RepositoryExists(pb.RepositoryExistsRequest(repository=other))  # noqa: E731
    assert code_of(call) == grpc.StatusCode.INVALID_ARGUMENT


def test_missing_repository_is_not_found(stub: Any) -> None:
    repo = shared_pb2.Repository(relative_path="tests/never-created.git")
    assert not stub.RepositoryExists(pb.RepositoryExistsRequest(repository=repo)).exists
    for call in (
        lambda: stub.RemoveRepository(pb.RemoveRepositoryRequest(repository=repo)),
        lambda: stub.RepositoryInfo(pb.RepositoryInfoRequest(repository=repo)),
        lambda: stub.RepositoryChecksum(pb.RepositoryChecksumRequest(repository=repo)),
        lambda: stub.OptimizeRepository(pb.OptimizeRepositoryRequest(repository=repo)),
    ):
        assert code_of(call) == grpc.StatusCode.NOT_FOUND


def test_remove_deletes_the_directory(stub: Any, new_repo: NewRepo) -> None:
    repo, path = new_repo()
    stub.RemoveRepository(pb.RemoveRepositoryRequest(repository=repo))
    assert not path.exists()
    assert not any(path.parent.glob(f".{path.name}*"))
    assert not stub.RepositoryExists(pb.RepositoryExistsRequest(repository=repo)).exists
    # The path is free again.
    stub.CreateRepository(pb.CreateRepositoryRequest(repository=repo))
    assert stub.RepositoryExists(pb.RepositoryExistsRequest(repository=repo)).exists


def test_info_of_an_empty_repository(stub: Any, new_repo: NewRepo) -> None:
    repo, path = new_repo(default_branch="dev")
    info = stub.RepositoryInfo(pb.RepositoryInfoRequest(repository=repo))
    assert info.default_branch == "refs/heads/dev"
    assert (info.ref_count, info.loose_objects, info.packfiles) == (0, 0, 0)
    assert info.size_bytes == sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_info_counts_refs_and_objects_then_optimize_packs_them(
    stub: Any, new_repo: NewRepo, work_tree: Path
) -> None:
    repo, path = new_repo()
    git_cli("tag", "v1", "HEAD~1", cwd=work_tree)
    push(work_tree, path, "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*")
    loose = int(git_cli("count-objects", cwd=path).split()[0])
    assert loose == 10  # 3 commits, 4 trees (root x3, dir), 3 blobs
    info = stub.RepositoryInfo(pb.RepositoryInfoRequest(repository=repo))
    assert (info.ref_count, info.loose_objects, info.packfiles) == (2, loose, 0)
    refs_only = stub.RepositoryInfo(pb.RepositoryInfoRequest(repository=repo, refs_only=True))
    assert refs_only == pb.RepositoryInfoResponse(ref_count=2, default_branch="refs/heads/main")
    before = stub.RepositoryChecksum(pb.RepositoryChecksumRequest(repository=repo)).checksum
    refs_before = git_cli("for-each-ref", cwd=path)

    stub.OptimizeRepository(pb.OptimizeRepositoryRequest(repository=repo))
    info = stub.RepositoryInfo(pb.RepositoryInfoRequest(repository=repo))
    assert (info.ref_count, info.loose_objects, info.packfiles) == (2, 0, 1)
    assert git_cli("for-each-ref", cwd=path) == refs_before
    assert stub.RepositoryChecksum(pb.RepositoryChecksumRequest(repository=repo)).checksum == before
    git_cli("fsck", "--strict", cwd=path)


def test_optimize_without_prune_keeps_unreachable_objects(
    stub: Any, new_repo: NewRepo, work_tree: Path
) -> None:
    repo, path = new_repo()
    push(work_tree, path)
    orphan = git_cli("hash-object", "-w", "--stdin", cwd=path, stdin="nobody points at me\n").strip()
    for prune in (False, True):  # fresh objects survive even a pruning gc (2-week expiry)
        stub.OptimizeRepository(pb.OptimizeRepositoryRequest(repository=repo, prune=prune))
        assert git_cli("cat-file", "-p", orphan, cwd=path) == "nobody points at me\n"


def test_checksum_empty_then_equal_for_equal_refs_whatever_the_packing(
    stub: Any, new_repo: NewRepo, work_tree: Path
) -> None:
    loose, loose_path = new_repo()
    packed, packed_path = new_repo()

    def checksum(repo: shared_pb2.Repository) -> str:
        return str(stub.RepositoryChecksum(pb.RepositoryChecksumRequest(repository=repo)).checksum)

    assert checksum(loose) == "0" * 40
    push(work_tree, loose_path)
    push(work_tree, packed_path)
    git_cli("repack", "-adq", cwd=packed_path)
    git_cli("pack-refs", "--all", cwd=packed_path)
    assert not list((loose_path / "objects/pack").glob("*.pack"))
    assert list((packed_path / "objects/pack").glob("*.pack"))
    assert checksum(loose) == checksum(packed) != "0" * 40

    commit_file(work_tree, "c.txt", "new\n", "fourth")
    push(work_tree, packed_path)
    assert checksum(loose) != checksum(packed)


def test_concurrent_creates_of_one_path_make_exactly_one_repository(stub: Any, node: NodeProcess) -> None:
    repo = shared_pb2.Repository(relative_path="tests/raced/one.git")
    req = pb.CreateRepositoryRequest(repository=repo)

    def create(_: int) -> grpc.StatusCode:
        try:
            stub.CreateRepository(req, timeout=10)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(create, range(6)))
    assert sorted(codes, key=str) == sorted(
        [grpc.StatusCode.OK] + [grpc.StatusCode.ALREADY_EXISTS] * 5, key=str
    )
    parent = node.storage_path / "tests/raced"
    assert [p.name for p in parent.iterdir()] == ["one.git"]
    git_cli("fsck", cwd=parent / "one.git")


def test_the_start_sweep_removes_the_nodes_leftovers_and_leaves_repositories_alone(tmp_path: Path) -> None:
    keep = tmp_path / "a/keep.git"
    git_cli("init", "-q", "--bare", str(keep), cwd=tmp_path)
    stale = [tmp_path / "a/.x.git.gitraft-tmp-new-1", tmp_path / "b/c/.y.git.gitraft-tmp-rm-2"]
    for path in stale:
        git_cli("init", "-q", "--bare", str(path), cwd=tmp_path)
    inside = keep / "objects/.z.gitraft-tmp-new-3"  # never looked at: inside a repository
    inside.mkdir()
    assert sorted(sweep_at_start(tmp_path)) == sorted(stale)
    assert keep.is_dir() and inside.is_dir() and not any(p.exists() for p in stale)
