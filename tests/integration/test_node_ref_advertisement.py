"""Ref listings a node answers without git (node.ref_advertisement) are what git says.

Each repository shape below is listed both ways - by `git upload-pack` / `git
receive-pack` run on the repository, and by the node's module (directly, and through the
node's SmartHTTPService) - and the bytes must be equal, or the module must decline (and
the node then answers with git's own bytes)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gitraft.v1 import smarthttp_pb2, smarthttp_pb2_grpc
from node import ref_advertisement as refs_on_disk
from node.git import git_env
from node.smarthttp_service import config_args
from tests.integration.conftest import NewRepo, commit_file, git_cli

V2 = {"GIT_PROTOCOL": "version=2"}


def request(
    *arguments: str, capabilities: tuple[str, ...] = ("agent=git/2.39.5", "object-format=sha1")
) -> bytes:
    body = refs_on_disk.pkt_line(b"command=ls-refs\n")
    body += b"".join(refs_on_disk.pkt_line(c.encode()) for c in capabilities)
    body += b"0001" + b"".join(refs_on_disk.pkt_line(a.encode() + b"\n") for a in arguments)
    return body + b"0000"


REQUESTS = [
    request(),
    request(
        "peel", "symrefs", "unborn", "ref-prefix HEAD", "ref-prefix refs/heads/", "ref-prefix refs/tags/"
    ),
    request(
        "peel", "symrefs", "unborn", "ref-prefix main", "ref-prefix refs/heads/main", "ref-prefix refs/tags/"
    ),
    request("symrefs", "ref-prefix refs/tags/v"),
    request("peel"),
    request("unborn"),
    request("symrefs", "unborn", "ref-prefix HEAD"),
    request("ref-prefix refs/heads/b", "ref-prefix refs/heads/a", "ref-prefix refs/heads/br"),
    request("peel", capabilities=("agent=x",)),
]


def git(args: list[str], path: Path, stdin: bytes = b"", env: dict[str, str] | None = None) -> bytes:
    done = subprocess.run(
        ["git", *args], cwd=path, input=stdin, capture_output=True, check=True, env=git_env(env)
    )
    return done.stdout


def upload_args(path: Path) -> list[str]:
    return [*config_args([], "upload-pack"), "upload-pack", "--stateless-rpc", str(path)]


def receive_args(path: Path) -> list[str]:
    return [
        *config_args([], "receive-pack"),
        "receive-pack",
        "--stateless-rpc",
        "--advertise-refs",
        str(path),
    ]


def shapes(tmp_path: Path) -> list[Path]:
    """Bare repositories of every shape the module reproduces or declines."""
    work = tmp_path / "work"
    work.mkdir()
    git_cli("init", "-q", "-b", "main", cwd=work)
    first = commit_file(work, "a.txt", "one\n", "first")
    commit_file(work, "b.txt", "two\n", "second")
    git_cli("tag", "light", first, cwd=work)
    git_cli("tag", "-a", "-m", "annotated", "v1.0", cwd=work)
    git_cli("tag", "-a", "-m", "tag of a tag", "v1.0-again", "v1.0", cwd=work)
    git_cli("branch", "b1", first, cwd=work)
    git_cli("branch", "a/nested", first, cwd=work)
    out = []

    def bare(name: str) -> Path:
        path = tmp_path / f"{name}.git"
        git_cli("clone", "-q", "--bare", str(work), str(path), cwd=tmp_path)
        out.append(path)
        return path

    empty = tmp_path / "empty.git"
    git_cli("init", "-q", "--bare", "-b", "main", str(empty), cwd=tmp_path)
    out.append(empty)
    bare("full")
    git_cli("pack-refs", "--all", cwd=bare("packed"))
    detached = bare("detached")
    git_cli("update-ref", "--no-deref", "HEAD", first, cwd=detached)
    unborn = bare("unborn")
    git_cli("symbolic-ref", "HEAD", "refs/heads/nothing-yet", cwd=unborn)
    symref = bare("symref")  # declined: a symbolic ref under refs/
    git_cli("symbolic-ref", "refs/remotes/origin/HEAD", "refs/heads/main", cwd=symref)
    hidden = bare("hidden")  # declined: hidden refs
    git_cli("config", "transfer.hideRefs", "refs/tags", cwd=hidden)
    broken = bare("broken")  # declined: a ref to a missing object
    (broken / "refs" / "heads" / "gone").write_text("1" * 40 + "\n")
    return out


def test_ls_refs_is_what_git_upload_pack_says(tmp_path: Path) -> None:
    answered = 0
    for path in shapes(tmp_path):
        for body in REQUESTS:
            expected = git(upload_args(path), path, body, V2)
            ours = refs_on_disk.ls_refs(path, body)
            assert ours in (None, expected), (path.name, body, ours, expected)
            answered += ours is not None
            if path.name.startswith(("symref", "hidden", "broken")):
                assert ours is None, path.name
    assert answered == 5 * len(REQUESTS)  # every request on each of the 5 shapes it supports


def test_receive_pack_advertisement_is_what_git_says(tmp_path: Path) -> None:
    for path in shapes(tmp_path):
        expected = git(receive_args(path), path)
        capabilities = refs_on_disk.capabilities_of(expected)
        assert capabilities is not None and b"report-status" in capabilities
        ours = refs_on_disk.receive_pack_advertisement(path, capabilities)
        if path.name.startswith(("symref", "hidden", "broken")):
            assert ours is None, path.name
        else:
            assert ours == expected, (path.name, ours, expected)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"0014command=ls-refs\n",  # no flush
        request("peel") + b"0000",  # a second request after the flush
        request("peel", "bogus-argument"),
        request(capabilities=("agent=x", "something-else")),
        request(capabilities=("session-id=abc",)),  # git refuses it unless advertised
        b"0015command=fetch\n\n0000",
        b"zzzzcommand=ls-refs\n0000",
    ],
)
def test_requests_it_does_not_reproduce_are_left_to_git(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "r.git"
    git_cli("init", "-q", "--bare", str(path), cwd=tmp_path)
    assert refs_on_disk.ls_refs(path, body) is None


def node_post_upload_pack(stub: Any, repo: Any, body: bytes) -> bytes:
    messages = [
        smarthttp_pb2.PostUploadPackRequest(repository=repo, git_protocol="version=2"),
        smarthttp_pb2.PostUploadPackRequest(data=body[:7]),
        smarthttp_pb2.PostUploadPackRequest(data=body[7:]),
    ]
    return b"".join(r.data for r in stub.PostUploadPack(iter(messages), timeout=30))


def node_receive_advertisement(stub: Any, repo: Any) -> bytes:
    request = smarthttp_pb2.InfoRefsRequest(repository=repo)
    return b"".join(r.data for r in stub.InfoRefsReceivePack(request, timeout=30))


def test_the_node_answers_as_git_and_sees_each_push_at_once(
    node_stub: Callable[[type], Any], new_repo: NewRepo, tmp_path: Path
) -> None:
    stub = node_stub(smarthttp_pb2_grpc.SmartHTTPServiceStub)
    repo, path = new_repo()
    work = tmp_path / "w"
    work.mkdir()
    git_cli("init", "-q", "-b", "main", cwd=work)
    body = request("peel", "symrefs", "unborn", "ref-prefix HEAD", "ref-prefix refs/heads/")
    for round_ in range(3):
        # The advertisement of an empty repository first (git's), then each one after a push.
        for _ in range(2):  # the second is built from the kept capabilities
            assert node_receive_advertisement(stub, repo) == git(receive_args(path), path)
        assert node_post_upload_pack(stub, repo, body) == git(upload_args(path), path, body, V2)
        commit_file(work, f"f{round_}.txt", f"{round_}\n", f"round {round_}")
        git_cli("push", "-q", str(path), f"main:refs/heads/b{round_}", "main", cwd=work)
        head = git_cli("rev-parse", "main", cwd=work).strip()
        assert f"{head} refs/heads/main".encode() in node_receive_advertisement(stub, repo)
        assert f"{head} HEAD symref-target:refs/heads/main".encode() in node_post_upload_pack(
            stub, repo, body
        )


def test_a_fetch_request_still_goes_to_git(
    node_stub: Callable[[type], Any], new_repo: NewRepo, work_tree: Path
) -> None:
    stub = node_stub(smarthttp_pb2_grpc.SmartHTTPServiceStub)
    repo, path = new_repo()
    git_cli("push", "-q", str(path), "main", cwd=work_tree)
    head = git_cli("rev-parse", "main", cwd=work_tree).strip()
    pkt = refs_on_disk.pkt_line
    body = pkt(b"command=fetch\n") + b"0001" + pkt(f"want {head}\n".encode()) + pkt(b"done\n") + b"0000"
    assert b"packfile\n" in node_post_upload_pack(stub, repo, body)


def test_refs_hidden_by_the_callers_options_stay_hidden(
    node_stub: Callable[[type], Any], new_repo: NewRepo, work_tree: Path
) -> None:
    stub = node_stub(smarthttp_pb2_grpc.SmartHTTPServiceStub)
    repo, path = new_repo()
    git_cli("tag", "v1", cwd=work_tree)
    git_cli("push", "-q", str(path), "main", "v1", cwd=work_tree)
    request = smarthttp_pb2.InfoRefsRequest(
        repository=repo, git_config_options=["transfer.hideRefs=refs/tags"]
    )
    for _ in range(2):  # the second one once the capabilities are known
        advertised = b"".join(r.data for r in stub.InfoRefsReceivePack(request, timeout=30))
        assert b"refs/heads/main" in advertised and b"refs/tags/v1" not in advertised


def test_a_ref_store_it_cannot_read_is_left_to_git(tmp_path: Path, work_tree: Path) -> None:
    path = tmp_path / "r.git"
    git_cli("clone", "-q", "--bare", str(work_tree), str(path), cwd=tmp_path)
    (path / "packed-refs").write_bytes(b"# pack-refs with: peeled fully-peeled sorted \nnot a ref line\n")
    assert refs_on_disk.ls_refs(path, request("peel")) is None
    assert refs_on_disk.receive_pack_advertisement(path, b"report-status") is None
