"""What a client may put in `git_config_options` (node/git_config.py), on a real node.

Issue #7, findings 1 and 2: with the section allow-list a client could turn a bare
repository into a work tree (`core.bare=false`, `receive.denyCurrentBranch=updateInstead`)
and push a `hooks/post-receive` that the node then ran, or make git quote the first line
of any file (`receive.fsck.skipList=/etc/hostname`). Every key class that could do such
a thing is refused with INVALID_ARGUMENT naming the key; no hook runs and no file content
comes back. test_cluster_node_config_policy.py reruns these tests through a proxy.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gitraft.v1 import shared_pb2, smarthttp_pb2, smarthttp_pb2_grpc
from node import git_config
from tests.integration.conftest import NewRepo, git_cli

ZERO = "0" * 40
# A file the refused options below would create, were git to run them.
STRAY = f"/tmp/gitraft-policy-{secrets.token_hex(6)}"
RUN = f"touch {STRAY}"
CALL_TIMEOUT = 30.0


def pkt(text: str) -> bytes:
    return f"{len(text.encode()) + 4:04x}".encode() + text.encode()


@pytest.fixture
def smarthttp(node_stub: Callable[[type], Any]) -> Any:
    return node_stub(smarthttp_pb2_grpc.SmartHTTPServiceStub)


@pytest.fixture
def hook_tree(tmp_path: Path) -> tuple[Path, str, Path]:
    """A work tree whose only commit holds an executable `hooks/post-receive` that
    touches a marker file; returns (work tree, commit id, marker path)."""
    marker = tmp_path / "hook-ran"
    work = tmp_path / "hostile"
    (work / "hooks").mkdir(parents=True)
    git_cli("init", "-q", "-b", "main", cwd=work)
    hook = work / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git_cli("add", "hooks/post-receive", cwd=work)
    git_cli("commit", "-q", "-m", "a hook", cwd=work)
    return work, git_cli("rev-parse", "HEAD", cwd=work).strip(), marker


def receive_pack_body(work: Path, new: str, ref: str, old: str = ZERO) -> bytes:
    """A receive-pack request creating (or moving) `ref` to `new`, with the pack."""
    commands = pkt(f"{old} {new} {ref}\0report-status side-band-64k\n") + b"0000"
    pack = subprocess.run(
        ["git", "pack-objects", "--revs", "--stdout", "-q"],
        cwd=work,
        input=f"{new}\n".encode(),
        capture_output=True,
        check=True,
    ).stdout
    return commands + pack


def post_receive_pack(
    smarthttp: Any, repo: shared_pb2.Repository, body: bytes, options: list[str]
) -> tuple[grpc.StatusCode, bytes, str]:
    """(status code, every response byte, status details) of one PostReceivePack."""
    first = smarthttp_pb2.PostReceivePackRequest(repository=repo, git_config_options=options)
    requests = iter([first, smarthttp_pb2.PostReceivePackRequest(data=body)])
    out = b""
    try:
        for message in smarthttp.PostReceivePack(requests, timeout=CALL_TIMEOUT):
            out += message.data
    except grpc.RpcError as exc:
        return exc.code(), out, exc.details() or ""
    return grpc.StatusCode.OK, out, ""


def head_branch(path: Path) -> str:
    return git_cli("symbolic-ref", "HEAD", cwd=path).strip()


def test_a_push_cannot_make_the_repository_a_work_tree_and_run_a_hook(
    smarthttp: Any, new_repo: NewRepo, hook_tree: tuple[Path, str, Path]
) -> None:
    """Finding 1 (remote code execution): refused, no hook file written, none run, also
    after a later ordinary push of the same commit."""
    work, commit, marker = hook_tree
    repo, path = new_repo()
    body = receive_pack_body(work, commit, head_branch(path))
    options = ["core.bare=false", "receive.denyCurrentBranch=updateInstead"]
    code, out, details = post_receive_pack(smarthttp, repo, body, options)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details, out[-300:])
    assert "core.bare" in details
    assert not (path / "hooks" / "post-receive").exists()
    assert not marker.exists()

    code, out, details = post_receive_pack(smarthttp, repo, body, [])
    assert code == grpc.StatusCode.OK, details
    assert b"ok " + head_branch(path).encode() in out
    assert git_cli("rev-parse", head_branch(path), cwd=path).strip() == commit
    assert git_cli("rev-parse", "--is-bare-repository", cwd=path).strip() == "true"
    assert not (path / "hooks" / "post-receive").exists()
    assert not marker.exists()


def test_a_push_cannot_read_a_file_through_an_fsck_skip_list(
    smarthttp: Any, new_repo: NewRepo, hook_tree: tuple[Path, str, Path], tmp_path: Path
) -> None:
    """Finding 2: `receive.fsck.skipList=<file>` quoted the file's first line back."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not-for-clients-7d1f\n")
    work, commit, _ = hook_tree
    repo, path = new_repo()
    body = receive_pack_body(work, commit, "refs/heads/x")
    for key in ("receive.fsck.skipList", "fsck.skipList", "RECEIVE.FSCK.SKIPLIST", "transfer.fsck.skipList"):
        code, out, details = post_receive_pack(smarthttp, repo, body, [f"{key}={secret}"])
        assert b"not-for-clients" not in out and "not-for-clients" not in details, (key, out[-200:])
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (key, code, details)
        assert str(tmp_path) not in details
    assert git_cli("for-each-ref", cwd=path) == ""


REFUSED = [
    # what must never change
    "core.bare=false",
    "core.bare=true",
    "receive.denyCurrentBranch=updateInstead",
    "receive.denyCurrentBranch=ignore",
    "core.worktree=/tmp",
    "core.sharedRepository=0777",
    "receive.fsck.skipList=/etc/hostname",
    "uploadpack.packObjectsHook=" + RUN,
    "core.hooksPath=/tmp",
    "core.fsmonitor=" + RUN,
    "core.sshCommand=" + RUN,
    "core.gitProxy=" + RUN,
    "core.pager=" + RUN,
    "core.editor=" + RUN,
    "core.askPass=" + RUN,
    "core.alternateRefsCommand=" + RUN,
    "diff.x.command=" + RUN,
    "filter.x.clean=" + RUN,
    "credential.helper=" + RUN,
    "alias.upload-pack=!" + RUN,
    "include.path=/etc/hostname",
    "includeIf.gitdir:/.path=/etc/hostname",
    "gpg.program=" + RUN,
    "sequence.editor=" + RUN,
    # switches the node owns
    "receive.fsckObjects=false",
    "transfer.fsckObjects=false",
    "receive.autogc=true",
    "gc.pruneExpire=now",
    "pack.threads=1000",
    "pack.windowMemory=100g",
    "core.bigFileThreshold=1",
    "uploadpack.allowAnySHA1InWant=false",
    "protocol.allow=always",
    "protocol.ext.allow=always",
    # malformed
    "novalue",
    "=x",
    "-c=x",
    "a b.c=1",
    "transfer.hideRefs=refs/x\nbad",
    "uploadpack.allowFilter=maybe",
    "receive.maxInputSize=-1",
    "receive.maxInputSize=1e9",
    "uploadpack.hideRefs=/etc/hostname",
    "uploadpack.hideRefs=refs/a b",
    "x" * 300 + ".y=1",
    "transfer.hideRefs=refs/" + "a" * 5000,
]


def test_every_dangerous_or_malformed_key_is_refused_naming_the_key(
    smarthttp: Any, new_repo: NewRepo
) -> None:
    repo, _ = new_repo()
    for option in REFUSED:
        request = smarthttp_pb2.InfoRefsRequest(repository=repo, git_config_options=[option])
        with pytest.raises(grpc.RpcError) as info:
            list(smarthttp.InfoRefsReceivePack(request, timeout=CALL_TIMEOUT))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, option
        details = info.value.details() or ""
        key = option.partition("=")[0].split("/")[0]  # absolute paths show as <path>
        assert key[:40] in details, (option, details)
        assert len(details) < 400, (option, details)


def test_too_many_or_too_long_options_are_invalid_argument(smarthttp: Any, new_repo: NewRepo) -> None:
    """100,000 options used to reach exec: "Argument list too long" (INTERNAL)."""
    repo, _ = new_repo()
    for options in (["transfer.hideRefs=refs/hidden"] * 100_000, ["uploadpack.allowFilter=true"] * 33):
        request = smarthttp_pb2.InfoRefsRequest(repository=repo, git_config_options=options)
        with pytest.raises(grpc.RpcError) as info:
            list(smarthttp.InfoRefsUploadPack(request, timeout=CALL_TIMEOUT))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "too many git config options" in (info.value.details() or "")


def test_allowed_keys_still_work(
    smarthttp: Any, new_repo: NewRepo, hook_tree: tuple[Path, str, Path]
) -> None:
    """transfer.hideRefs hides refs from the advertisement; receive.maxInputSize limits a
    push (as GitLab uses both through Gitaly); a boolean key passes."""
    work, commit, _ = hook_tree
    repo, path = new_repo()
    body = receive_pack_body(work, commit, "refs/hidden/x")
    code, _, details = post_receive_pack(smarthttp, repo, body, ["uploadpack.allowFilter=true"])
    assert code == grpc.StatusCode.OK, details
    plain = smarthttp_pb2.InfoRefsRequest(repository=repo)
    hidden = smarthttp_pb2.InfoRefsRequest(
        repository=repo, git_config_options=["transfer.hideRefs=refs/hidden"]
    )
    assert b"refs/hidden/x" in b"".join(m.data for m in smarthttp.InfoRefsUploadPack(plain))
    assert b"refs/hidden/x" not in b"".join(m.data for m in smarthttp.InfoRefsUploadPack(hidden))

    body = receive_pack_body(work, commit, "refs/heads/small")
    post_receive_pack(smarthttp, repo, body, ["receive.maxInputSize=10"])
    assert not git_cli("for-each-ref", "refs/heads/small", cwd=path)


@pytest.fixture(autouse=True)
def _no_stray_marker() -> Iterator[None]:
    """The refused options above name /tmp/x: make sure nothing ever created it."""
    existed = os.path.exists(STRAY + "")
    yield
    assert existed or not os.path.exists(STRAY + "")


def test_the_pins_win_over_anything_before_them(tmp_path: Path) -> None:
    """Even were a key let through, the pins come last on git's command line, and git
    takes the last `-c` of a key (checked with the real git)."""
    bare = tmp_path / "pins.git"
    git_cli("init", "-q", "--bare", str(bare), cwd=tmp_path)
    before = ["-c", "core.bare=false", "-c", "receive.denyCurrentBranch=updateInstead"]
    args = [*before, *git_config.command_line([], ["core.bare=false"])]
    assert git_cli(*args, "rev-parse", "--is-bare-repository", cwd=bare).strip() == "true"
    assert git_cli(*args, "config", "--get", "receive.denyCurrentBranch", cwd=bare).strip() == "refuse"
