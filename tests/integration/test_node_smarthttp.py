"""SmartHTTPService and UploadPackSession called directly on a real node process."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cluster.testing import NodeProcess
from common.auth import bearer_metadata
from gitraft.v1 import repository_pb2, repository_pb2_grpc, shared_pb2, smarthttp_pb2, smarthttp_pb2_grpc
from tests.integration.conftest import NewRepo, commit_file, git_cli
from tests.integration.gateway_helpers import git_children, wait_for


def pkt(text: str) -> bytes:
    return f"{len(text) + 4:04x}".encode() + text.encode()


@pytest.fixture
async def channel(node: NodeProcess) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(node.address) as ch:
        yield ch


@pytest.fixture
def smarthttp(channel: grpc.aio.Channel) -> Any:
    return smarthttp_pb2_grpc.SmartHTTPServiceStub(channel)


@pytest.fixture
def pushed_repo(new_repo: NewRepo, work_tree: Path) -> tuple[shared_pb2.Repository, str]:
    repo, path = new_repo()
    git_cli("push", "-q", str(path), "main", cwd=work_tree)
    return repo, git_cli("rev-parse", "main", cwd=work_tree).strip()


async def collect(call: Any) -> bytes:
    return b"".join([m.data async for m in call])


async def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(call)
    return info.value.code()


async def test_info_refs_has_no_preamble_and_speaks_v2_on_request(
    smarthttp: Any, node: NodeProcess, pushed_repo: tuple[shared_pb2.Repository, str]
) -> None:
    repo, head = pushed_repo
    md = bearer_metadata(node.token)
    v0 = await collect(
        smarthttp.InfoRefsUploadPack(smarthttp_pb2.InfoRefsRequest(repository=repo), metadata=md)
    )
    assert v0[4:49] == f"{head} HEAD".encode()  # the first pkt-line: no preamble
    assert b"refs/heads/main" in v0
    v2_request = smarthttp_pb2.InfoRefsRequest(repository=repo, git_protocol="version=2")
    v2 = await collect(smarthttp.InfoRefsUploadPack(v2_request, metadata=md))
    assert v2.startswith(b"000eversion 2\n")
    receive = await collect(smarthttp.InfoRefsReceivePack(v2_request, metadata=md))
    assert b"report-status" in receive and b"# service=" not in receive


async def test_post_upload_pack_sends_a_pack(
    smarthttp: Any, node: NodeProcess, pushed_repo: tuple[shared_pb2.Repository, str]
) -> None:
    repo, head = pushed_repo

    async def requests() -> AsyncIterator[smarthttp_pb2.PostUploadPackRequest]:
        yield smarthttp_pb2.PostUploadPackRequest(repository=repo)
        yield smarthttp_pb2.PostUploadPackRequest(data=pkt(f"want {head} ofs-delta\n") + b"0000")
        yield smarthttp_pb2.PostUploadPackRequest(data=pkt("done\n"))

    out = await collect(smarthttp.PostUploadPack(requests(), metadata=bearer_metadata(node.token)))
    assert out.startswith(b"0008NAK\n")
    assert out[8:12] == b"PACK"


async def test_a_want_advertised_before_the_ref_moved_is_still_served(
    smarthttp: Any,
    node: NodeProcess,
    pushed_repo: tuple[shared_pb2.Repository, str],
    new_repo: NewRepo,
    work_tree: Path,
) -> None:
    """info/refs then POST is two requests: a ref may move in between (a force-push of an
    unrelated history); the POST for the old, now unreachable tip is served anyway."""
    repo, old_head = pushed_repo
    md = bearer_metadata(node.token)
    advert = await collect(
        smarthttp.InfoRefsUploadPack(smarthttp_pb2.InfoRefsRequest(repository=repo), metadata=md)
    )
    assert old_head.encode() in advert
    git_cli("checkout", "-q", "--orphan", "other", cwd=work_tree)
    commit_file(work_tree, "c.txt", "unrelated\n", "unrelated")
    path = node.storage_path / repo.relative_path
    git_cli("push", "-q", "--force", str(path), "other:main", cwd=work_tree)
    assert git_cli("rev-parse", "main", cwd=path).strip() != old_head

    async def requests() -> AsyncIterator[smarthttp_pb2.PostUploadPackRequest]:
        yield smarthttp_pb2.PostUploadPackRequest(repository=repo)
        yield smarthttp_pb2.PostUploadPackRequest(data=pkt(f"want {old_head} ofs-delta\n") + b"0000")
        yield smarthttp_pb2.PostUploadPackRequest(data=pkt("done\n"))

    out = await collect(smarthttp.PostUploadPack(requests(), metadata=md))
    assert out.startswith(b"0008NAK\n")
    assert out[8:12] == b"PACK"


async def test_bad_requests(
    smarthttp: Any, node: NodeProcess, pushed_repo: tuple[shared_pb2.Repository, str]
) -> None:
    repo, _ = pushed_repo
    md = bearer_metadata(node.token)
    cases = {
        grpc.StatusCode.NOT_FOUND: smarthttp_pb2.InfoRefsRequest(
            repository=shared_pb2.Repository(relative_path="no/such.git")
        ),
        grpc.StatusCode.INVALID_ARGUMENT: smarthttp_pb2.InfoRefsRequest(
            repository=shared_pb2.Repository(relative_path="../../etc")
        ),
    }
    for code, request in cases.items():
        assert await code_of(smarthttp.InfoRefsUploadPack(request, metadata=md)) == code
    bad_option = smarthttp_pb2.InfoRefsRequest(repository=repo, git_config_options=["core.sshCommand=sh"])
    assert (
        await code_of(smarthttp.InfoRefsReceivePack(bad_option, metadata=md))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    bad_protocol = smarthttp_pb2.InfoRefsRequest(repository=repo, git_protocol="version=2\n")
    assert (
        await code_of(smarthttp.InfoRefsUploadPack(bad_protocol, metadata=md))
        == grpc.StatusCode.INVALID_ARGUMENT
    )

    async def nothing() -> AsyncIterator[smarthttp_pb2.PostUploadPackRequest]:
        return
        yield  # pragma: no cover

    assert await code_of(smarthttp.PostUploadPack(nothing(), metadata=md)) == grpc.StatusCode.INVALID_ARGUMENT


async def test_missing_or_wrong_token_is_unauthenticated(
    smarthttp: Any, channel: grpc.aio.Channel, pushed_repo: tuple[shared_pb2.Repository, str]
) -> None:
    repo, _ = pushed_repo
    info = smarthttp_pb2.InfoRefsRequest(repository=repo)

    never = asyncio.Event()

    async def idle() -> AsyncIterator[Any]:
        """Sends nothing: the node refuses before reading a request. (A request sent
        while the server aborts can make grpc report its own failed send, INTERNAL,
        instead of the server's status.)"""
        await never.wait()
        yield  # pragma: no cover

    sessions = repository_pb2_grpc.RepositoryServiceStub(channel)
    for metadata in ((), bearer_metadata("wrong")):
        calls = (
            smarthttp.InfoRefsUploadPack(info, metadata=metadata),
            smarthttp.InfoRefsReceivePack(info, metadata=metadata),
            smarthttp.PostUploadPack(idle(), metadata=metadata),
            smarthttp.PostReceivePack(idle(), metadata=metadata),
            sessions.UploadPackSession(idle(), metadata=metadata),
        )
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                _ = [m async for m in call]
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_client_going_away_kills_git(
    smarthttp: Any, node: NodeProcess, pushed_repo: tuple[shared_pb2.Repository, str]
) -> None:
    repo, head = pushed_repo
    stalled = asyncio.Event()

    async def requests() -> AsyncIterator[smarthttp_pb2.PostReceivePackRequest]:
        line = pkt(f"{head} {'1' * 40} refs/heads/main\0report-status\n") + b"0000"
        header = b"PACK" + (2).to_bytes(4, "big") + (5).to_bytes(4, "big")  # 5 objects follow...
        yield smarthttp_pb2.PostReceivePackRequest(repository=repo, data=line + header)
        await stalled.wait()

    assert node.process is not None
    objects = node.storage_path / repo.relative_path / "objects"
    call = smarthttp.PostReceivePack(requests(), metadata=bearer_metadata(node.token))
    await wait_for(lambda: git_children(node.process.pid) > 0)
    await wait_for(lambda: bool(quarantines(objects)))  # receive-pack waits for the pack in it
    call.cancel()
    await wait_for(lambda: git_children(node.process.pid) == 0)
    assert git_cli("rev-parse", "refs/heads/main", cwd=node.storage_path / repo.relative_path).strip() == head
    # git removes its quarantine only when it ends by itself; the node removes it
    # (it was left for ever before node.janitor)
    await wait_for(lambda: not quarantines(objects))


async def test_a_refused_ref_update_names_the_repository_not_its_place_on_disk(
    smarthttp: Any, node: NodeProcess, pushed_repo: tuple[shared_pb2.Repository, str]
) -> None:
    """A ref whose lock another git holds (a concurrent push) is refused; git's message
    names the lock file by its absolute path, which the client saw as `remote: error:`."""
    repo, head = pushed_repo
    (node.storage_path / repo.relative_path / "refs" / "heads" / "held.lock").write_text(head + "\n")
    empty_pack = b"PACK" + (2).to_bytes(4, "big") + (0).to_bytes(4, "big")
    empty_pack += hashlib.sha1(empty_pack).digest()
    command = pkt(f"{'0' * 40} {head} refs/heads/held\0report-status side-band-64k\n") + b"0000"

    async def requests() -> AsyncIterator[smarthttp_pb2.PostReceivePackRequest]:
        yield smarthttp_pb2.PostReceivePackRequest(repository=repo, data=command + empty_pack)

    answer = await collect(smarthttp.PostReceivePack(requests(), metadata=bearer_metadata(node.token)))
    assert b"ng refs/heads/held" in answer  # refused, as git refuses it
    assert f"Unable to create '{repo.relative_path}/".encode() in answer, answer
    assert str(node.storage_path).encode() not in answer and b"'/" not in answer, answer


def quarantines(objects: Path) -> list[str]:
    """The receive-pack quarantine directories in a repository's objects directory."""
    return [p.name for p in objects.iterdir() if p.name.startswith("tmp_objdir-incoming-")]


async def test_upload_pack_session_is_full_duplex(
    channel: grpc.aio.Channel, node: NodeProcess, pushed_repo: tuple[shared_pb2.Repository, str]
) -> None:
    repo, head = pushed_repo
    stub = repository_pb2_grpc.RepositoryServiceStub(channel)
    call = stub.UploadPackSession(metadata=bearer_metadata(node.token))
    await call.write(repository_pb2.UploadPackSessionRequest(repository=repo))
    first = await call.read()  # the advertisement arrives before we send anything else
    assert f"{head} HEAD".encode() in first.stdout
    await call.write(repository_pb2.UploadPackSessionRequest(stdin=b"0000"))  # no wants: done
    await call.done_writing()
    rest = [m async for m in _read_all(call)]
    assert rest[-1].exited and rest[-1].exit_status == 0


async def _read_all(call: Any) -> AsyncIterator[Any]:
    while (message := await call.read()) is not grpc.aio.EOF:
        yield message
