"""The stock git client through the Gateway against a real node process.

The gateway runs in the test's event loop; git runs in worker threads (gateway_helpers).
"""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from cluster.gateway.server import Gateway
from cluster.testing import ManagedProcess, NodeProcess, free_port, refused_address
from gitraft.v1 import repository_pb2, repository_pb2_grpc, shared_pb2
from tests.integration.conftest import NewRepo, commit_file, git_cli
from tests.integration.gateway_helpers import (
    git,
    git_children,
    git_fails,
    git_stderr,
    object_count,
    raw_http,
    refs_of,
    wait_for,
)

HTTP_TOKEN = secrets.token_hex(16)
ZERO = "0" * 40


@pytest.fixture
async def gateway(node: NodeProcess) -> AsyncIterator[Gateway]:
    gw = Gateway(node.address, node.token, HTTP_TOKEN)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def url_of(gw: Gateway, repo: shared_pb2.Repository, token: str = HTTP_TOKEN) -> str:
    return f"http://x:{token}@127.0.0.1:{gw.port}/{repo.relative_path}"


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def rev(ref: str, cwd: Path) -> str:
    return git_cli("rev-parse", ref, cwd=cwd).strip()


async def test_push_clone_fetch_delete_and_force_push(
    gateway: Gateway, new_repo: NewRepo, work_tree: Path, tmp_path: Path, git_home: Path
) -> None:
    repo, path = new_repo()
    url = url_of(gateway, repo)
    work = work_tree
    git_cli("branch", "feature", "HEAD~1", cwd=work)
    git_cli("branch", "topic", "HEAD~2", cwd=work)
    git_cli("tag", "v1", "HEAD~2", cwd=work)
    git_cli("tag", "-a", "-m", "release", "v2", cwd=work)
    await git("push", "-q", url, "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*", cwd=work)
    assert refs_of(path) == refs_of(work)
    assert len(refs_of(path)) == 5

    clone = tmp_path / "clone"
    await git("clone", "-q", url, str(clone), cwd=tmp_path)
    assert (clone / "a.txt").read_text() == "three\n"
    assert (clone / "dir" / "b.txt").read_text() == "two\n"
    for ref in ("feature", "topic"):
        assert rev(f"origin/{ref}", clone) == rev(ref, work)
    assert rev("v2", clone) == rev("v2", work)
    assert rev("v2^{commit}", clone) == rev("main", work)

    # A new commit travels by an incremental fetch.
    new = commit_file(work, "c.txt", "four\n", "fourth")
    await git("push", "-q", url, "main", cwd=work)
    await git("fetch", "-q", "origin", cwd=clone)
    assert rev("origin/main", clone) == new == refs_of(path)["refs/heads/main"]
    assert git_cli("show", "origin/main:c.txt", cwd=clone) == "four\n"

    # Deleting a branch by push.
    await git("push", "-q", url, ":feature", cwd=work)
    assert "refs/heads/feature" not in refs_of(path)
    await git("fetch", "-q", "--prune", "origin", cwd=clone)
    assert "refs/remotes/origin/feature" not in refs_of(clone)

    # A force-push rewrites main.
    git_cli("reset", "-q", "--hard", "HEAD~2", cwd=work)
    rewritten = commit_file(work, "a.txt", "rewritten\n", "rewrite")
    assert "rejected" in await git_fails("push", url, "main", cwd=work)
    await git("push", "-q", "--force", url, "main", cwd=work)
    assert refs_of(path)["refs/heads/main"] == rewritten
    await git("fetch", "-q", "origin", cwd=clone)
    assert rev("origin/main", clone) == rewritten
    assert git_cli("show", "origin/main:a.txt", cwd=clone) == "rewritten\n"


async def test_clone_with_protocol_v2_and_v0(
    gateway: Gateway, new_repo: NewRepo, work_tree: Path, tmp_path: Path, git_home: Path
) -> None:
    repo, _ = new_repo()
    url = url_of(gateway, repo)
    await git("push", "-q", url, "main", cwd=work_tree)
    traces = {}
    for version in ("2", "0"):
        clone = tmp_path / f"clone-v{version}"
        traces[version] = await git_stderr(
            "-c", f"protocol.version={version}", "clone", url, str(clone), cwd=tmp_path,
            env={"GIT_TRACE_PACKET": "1"},
        )  # fmt: skip
        assert rev("HEAD", clone) == rev("main", work_tree)
        assert (clone / "a.txt").read_text() == "three\n"
    assert "git< version 2" in traces["2"]
    assert "ls-refs" in traces["2"]
    assert "git< version 2" not in traces["0"]
    assert "# service=git-upload-pack" in traces["0"]


async def test_fetch_with_a_gzipped_request(
    gateway: Gateway, new_repo: NewRepo, work_tree: Path, tmp_path: Path, git_home: Path
) -> None:
    """A client with 300 commits the server lacks sends long "have" lists: git gzips
    upload-pack requests over 1 KiB (remote-curl.c post_rpc), aiohttp inflates them."""
    repo, _ = new_repo()
    url = url_of(gateway, repo)
    await git("push", "-q", url, "main", cwd=work_tree)
    clone = tmp_path / "clone"
    await git("clone", "-q", url, str(clone), cwd=tmp_path)
    fast_import_commits(clone, "refs/heads/local", rev("main", clone), 300)
    new = commit_file(work_tree, "c.txt", "four\n", "fourth")
    await git("push", "-q", url, "main", cwd=work_tree)

    trace = await git_stderr("fetch", "origin", cwd=clone, env={"GIT_TRACE_CURL": "1"})
    assert "Content-Encoding: gzip" in trace
    assert rev("origin/main", clone) == new
    assert git_cli("show", "origin/main:c.txt", cwd=clone) == "four\n"


def fast_import_commits(work: Path, ref: str, parent: str, count: int) -> None:
    """`count` commits on `ref` after `parent`, dated after everything else."""
    lines = []
    for i in range(count):
        when = 1_800_000_000 + i
        content, message = f"local change {i}\n", f"local {i}\n"
        lines.append(f"commit {ref}\ncommitter t <t@t.invalid> {when} +0000\n")
        lines.append(f"data {len(message)}\n{message}")
        if i == 0:
            lines.append(f"from {parent}\n")
        lines.append(f"M 644 inline local{i % 7}.txt\ndata {len(content)}\n{content}\n")
    git_cli("fast-import", "--quiet", cwd=work, stdin="".join(lines))


async def test_traversal_and_bad_paths_are_400(gateway: Gateway, node: NodeProcess) -> None:
    auth = {"Authorization": basic_auth("x", HTTP_TOKEN)}
    bad = (
        "GET /%2e%2e/%2e%2e/etc.git/info/refs?service=git-upload-pack",
        "GET /a/%2E%2E/%2E%2E/%2E%2E/x.git/info/refs?service=git-upload-pack",
        "GET /../../x.git/info/refs?service=git-receive-pack",
        "GET //x.git/info/refs?service=git-upload-pack",
        "GET /-upload.git/info/refs?service=git-upload-pack",
        "GET /a%5cb.git/info/refs?service=git-upload-pack",
        "GET /a%00b.git/info/refs?service=git-upload-pack",
        "POST /a/../../x.git/git-upload-pack",
        "POST /a%2f..%2f..%2fx.git/git-receive-pack",
    )
    for target in bad:
        status, body = await raw_http(gateway.port, f"{target} HTTP/1.1", auth)
        assert status == 400, (target, status, body)
        assert "repository path" in body
    status, body = await raw_http(gateway.port, "GET /x.git/info/refs?service=evil HTTP/1.1", auth)
    assert status == 400 and "unsupported service" in body
    status, body = await raw_http(gateway.port, "GET /x.git/info/refs HTTP/1.1", auth)
    assert status == 400


async def test_missing_or_wrong_http_token_is_401(
    gateway: Gateway, new_repo: NewRepo, tmp_path: Path, git_home: Path
) -> None:
    repo, _ = new_repo()
    target = f"GET /{repo.relative_path}/info/refs?service=git-upload-pack HTTP/1.1"
    for headers in (
        {},
        {"Authorization": basic_auth("x", "wrong")},
        {"Authorization": f"Bearer {HTTP_TOKEN}"},
        {"Authorization": "Basic !!!"},
    ):
        status, _ = await raw_http(gateway.port, target, headers)
        assert status == 401, headers
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{gateway.port}/{repo.relative_path}/info/refs") as resp,
    ):
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    err = await git_fails("ls-remote", url_of(gateway, repo, token="wrong"), cwd=tmp_path)
    assert "Authentication failed" in err
    auth = {"Authorization": basic_auth("anyone", HTTP_TOKEN)}
    assert (await raw_http(gateway.port, target, auth))[0] == 200


async def test_wrong_upstream_token_is_403(node: NodeProcess, new_repo: NewRepo, tmp_path: Path) -> None:
    repo, _ = new_repo()
    gw = Gateway(node.address, "wrong-node-token", HTTP_TOKEN)
    await gw.start()
    try:
        err = await git_fails("ls-remote", url_of(gw, repo), cwd=tmp_path)
        assert "403" in err
    finally:
        await gw.stop()


async def test_missing_repository_is_404(gateway: Gateway, tmp_path: Path, git_home: Path) -> None:
    url = f"http://x:{HTTP_TOKEN}@127.0.0.1:{gateway.port}/no/such/repo.git"
    err = await git_fails("clone", url, str(tmp_path / "c"), cwd=tmp_path)
    assert "not found" in err


async def test_corrupt_pack_is_refused_and_the_node_keeps_serving(
    gateway: Gateway, new_repo: NewRepo, work_tree: Path, tmp_path: Path, git_home: Path
) -> None:
    repo, path = new_repo()
    url = url_of(gateway, repo)
    await git("push", "-q", url, "main", cwd=work_tree)
    refs, objects = refs_of(path), object_count(path)

    # 1. Garbage after a valid command list.
    new = "1" * 40
    for pack in (b"PACK\x00\x00\x00\x02\x00\x00\x00\x03" + secrets.token_bytes(4000), b"garbage"):
        body = receive_pack_command(ZERO, new, "refs/heads/evil") + pack
        status, result = await post_receive_pack(gateway, repo, body)
        assert status == 200
        assert b"unpack" in result and b"unpack ok" not in result
        assert refs_of(path) == refs and object_count(path) == objects

    # 2. A well-formed pack holding an object that fails fsck, pushed by stock git.
    bad = bad_commit(work_tree)
    err = await git_fails("push", url, f"{bad}:refs/heads/bad", cwd=work_tree)
    assert "unpack" in err or "rejected" in err
    assert refs_of(path) == refs and object_count(path) == objects

    # The node keeps serving.
    clone = tmp_path / "clone"
    await git("clone", "-q", url, str(clone), cwd=tmp_path)
    assert rev("HEAD", clone) == refs["refs/heads/main"]


def receive_pack_command(old: str, new: str, ref: str) -> bytes:
    line = f"{old} {new} {ref}\0report-status\n".encode()
    return f"{len(line) + 4:04x}".encode() + line + b"0000"


async def post_receive_pack(gw: Gateway, repo: shared_pb2.Repository, body: bytes) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{gw.port}/{repo.relative_path}/git-receive-pack"
    headers = {
        "Content-Type": "application/x-git-receive-pack-request",
        "Authorization": basic_auth("x", HTTP_TOKEN),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=io.BytesIO(body), headers=headers) as resp,
    ):
        return resp.status, await resp.read()


def bad_commit(work: Path) -> str:
    """A commit object with a malformed author line, written into `work` unchecked."""
    tree = git_cli("rev-parse", "HEAD^{tree}", cwd=work).strip()
    parent = git_cli("rev-parse", "HEAD", cwd=work).strip()
    content = f"tree {tree}\nparent {parent}\nauthor broken\ncommitter broken\n\nbad\n"
    return git_cli(
        "hash-object", "-t", "commit", "--literally", "-w", "--stdin", cwd=work, stdin=content
    ).strip()


async def test_push_to_create_through_the_hook(
    node: NodeProcess, node_stub: Callable[[type], Any], work_tree: Path, git_home: Path
) -> None:
    stub = node_stub(repository_pb2_grpc.RepositoryServiceStub)
    asked: list[str] = []

    async def create(relative_path: str) -> bool:
        asked.append(relative_path)
        request = repository_pb2.CreateRepositoryRequest(
            repository=shared_pb2.Repository(relative_path=relative_path)
        )
        try:
            await asyncio.to_thread(stub.CreateRepository, request, timeout=10)
        except grpc.RpcError:
            return False
        return True

    gw = Gateway(node.address, node.token, HTTP_TOKEN, on_missing_repository=create)
    await gw.start()
    try:
        relative = f"created/{secrets.token_hex(4)}"
        url = f"http://x:{HTTP_TOKEN}@127.0.0.1:{gw.port}/{relative}"
        await git("push", "-q", url, "main", cwd=work_tree)
        assert asked == [f"{relative}.git"]
        assert refs_of(node.storage_path / f"{relative}.git")["refs/heads/main"] == rev("main", work_tree)
    finally:
        await gw.stop()


def test_gitraft_gateway_command(
    node: NodeProcess, new_repo: NewRepo, work_tree: Path, tmp_path: Path
) -> None:
    """The standalone `gitraft gateway` process serves push and clone; SIGTERM stops it."""
    repo, path = new_repo()
    (tmp_path / "node.token").write_text(node.token + "\n")
    (tmp_path / "http.token").write_text(HTTP_TOKEN)
    port = free_port()
    argv = [sys.executable, "-m", "cluster.cli.main", "gateway", "--upstream", node.address]
    argv += [
        "--upstream-token-file",
        str(tmp_path / "node.token"),
        "--token-file",
        str(tmp_path / "http.token"),
    ]
    process = ManagedProcess("gateway", [*argv, "--listen", f"127.0.0.1:{port}"], tmp_path / "gateway.log")
    process.spawn()
    try:
        wait_listening(port, process)
        url = f"http://x:{HTTP_TOKEN}@127.0.0.1:{port}/{repo.relative_path}"
        git_cli("push", "-q", url, "main", cwd=work_tree)
        git_cli("clone", "-q", url, str(tmp_path / "clone"), cwd=tmp_path)
        assert rev("HEAD", tmp_path / "clone") == rev("main", work_tree) == refs_of(path)["refs/heads/main"]
    finally:
        process.stop()
    assert process.proc is not None and process.proc.returncode == 0, process.log_text()


def wait_listening(port: int, process: ManagedProcess) -> None:
    for _ in range(400):
        assert process.alive(), process.log_text()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"gateway not listening: {process.log_text()}")


async def test_unreachable_upstream_is_503(tmp_path: Path) -> None:
    with refused_address() as upstream:
        gw = Gateway(upstream, "token", HTTP_TOKEN)
        await gw.start()
        try:
            auth = {"Authorization": basic_auth("x", HTTP_TOKEN)}
            status, _ = await raw_http(gw.port, "GET /x.git/info/refs?service=git-upload-pack HTTP/1.1", auth)
            assert status == 503
        finally:
            await gw.stop()


async def test_the_probe_before_a_large_post_never_goes_upstream(tmp_path: Path) -> None:
    """git's probe (a `0000` body alone) is answered 200, empty, by the gateway itself;
    any other body goes upstream (here unreachable: 503)."""
    with refused_address() as upstream:
        gw = Gateway(upstream, "token", HTTP_TOKEN)
        await gw.start()
        try:
            for service in ("git-upload-pack", "git-receive-pack"):
                headers = {
                    "Authorization": basic_auth("x", HTTP_TOKEN),
                    "Content-Type": f"application/x-{service}-request",
                }
                line = f"POST /x.git/{service} HTTP/1.1"
                assert await raw_http(gw.port, line, headers, b"0000") == (200, "")
                assert (await raw_http(gw.port, line, headers, b"0001"))[0] == 503
                assert (await raw_http(gw.port, line, headers, b"00000000"))[0] == 503
        finally:
            await gw.stop()


async def test_a_client_going_away_mid_push_stops_git_on_the_node(
    gateway: Gateway, node: NodeProcess, new_repo: NewRepo, work_tree: Path
) -> None:
    repo, path = new_repo()
    await git("push", "-q", url_of(gateway, repo), "main", cwd=work_tree)
    head = refs_of(path)["refs/heads/main"]
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    head_lines = [
        f"POST /{repo.relative_path}/git-receive-pack HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: {basic_auth('x', HTTP_TOKEN)}",
        "Content-Type: application/x-git-receive-pack-request",
        "Content-Length: 100000000",
    ]
    writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode())
    writer.write(receive_pack_command(head, "1" * 40, "refs/heads/main") + b"PACK\x00\x00\x00\x02")
    await writer.drain()
    assert node.process is not None
    await wait_for(lambda: git_children(node.process.pid) > 0)
    writer.close()  # the client goes away in the middle of its pack
    await writer.wait_closed()
    await wait_for(lambda: git_children(node.process.pid) == 0)
    assert refs_of(path)["refs/heads/main"] == head
    assert not await reader.read()


async def test_a_refused_push_body_gets_the_upstream_status_every_time(
    node: NodeProcess, gateway: Gateway, new_repo: NewRepo
) -> None:
    """Upstream refuses while the gateway still streams the body: 403 or 404, never the
    500 of grpc's "Internal error from Core" (grpc/grpc#36066; the node drains first)."""
    repo, _ = new_repo()
    body = receive_pack_command(ZERO, "1" * 40, "refs/heads/x") + secrets.token_bytes(2 << 20)
    wrong = Gateway(node.address, "wrong-node-token", HTTP_TOKEN)
    await wrong.start()
    try:
        for _ in range(10):
            assert (await post_receive_pack(wrong, repo, body))[0] == 403
            missing = shared_pb2.Repository(relative_path="no/such/repo.git")
            assert (await post_receive_pack(gateway, missing, body))[0] == 404
    finally:
        await wrong.stop()


MALFORMED_BODIES = {
    "truncated length": b"00",
    "length past the end": b"0032want",
    "non-hex length": b"zzzzwant " + b"1" * 40,
    "huge length": b"ffff" + b"a" * 10,
    "length below 4": b"0003",
    "empty": b"",
}


@pytest.mark.parametrize("service", ["git-upload-pack", "git-receive-pack"])
async def test_malformed_pkt_lines_are_400_and_change_nothing(
    gateway: Gateway, new_repo: NewRepo, work_tree: Path, tmp_path: Path, git_home: Path, service: str
) -> None:
    repo, path = new_repo()
    url = url_of(gateway, repo)
    await git("push", "-q", url, "main", cwd=work_tree)
    refs, objects = refs_of(path), object_count(path)
    headers = {
        "Content-Type": f"application/x-{service}-request",
        "Authorization": basic_auth("x", HTTP_TOKEN),
    }
    target = f"http://127.0.0.1:{gateway.port}/{repo.relative_path}/{service}"
    async with aiohttp.ClientSession() as session:
        for name, body in MALFORMED_BODIES.items():
            async with session.post(target, data=body, headers=headers) as resp:
                assert resp.status == 400, (name, resp.status, await resp.text())
                assert "malformed" in await resp.text()
    assert refs_of(path) == refs and object_count(path) == objects
    clone = tmp_path / "clone"
    await git("clone", "-q", url, str(clone), cwd=tmp_path)
    assert rev("HEAD", clone) == refs["refs/heads/main"]
