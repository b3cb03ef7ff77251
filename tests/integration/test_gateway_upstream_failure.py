"""An upstream failure in the middle of a response aborts the HTTP connection.

The node serving a clone is SIGKILLed after the response started (one proxy, one node,
so the serving node is known). The gateway must not end the response normally (the
chunked terminator would tell the client "this is the whole body"): it drops the
connection, so an HTTP client sees an incomplete body and git reports an error.

- raw HTTP: the test reads the first megabyte of a 64 MB upload-pack answer, kills the
  node, and reading the rest must fail as incomplete (not end cleanly);
- the stock git client: a relay between git and the proxy holds the answer after its
  first megabyte while the node is killed; git must exit non-zero with an error.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from cluster.testing import GIT_ENV, LocalCluster, init_work_tree, run_git

PATH = "big/repo"
NODE = "node-a"
# One incompressible blob (nothing to delta against: pack-objects just copies it) of
# 64 MB: several times what the buffers on the way can hold (socket buffers grow to a
# few MB each on loopback, gRPC windows to a few MB per hop), so the node is still
# sending when it is killed.
BLOBS = 1
BLOB_SIZE = 64 * 1024 * 1024
HOLD_AFTER = 1024 * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster"), proxies=1, nodes=1) as c:
        work = init_work_tree(tmp_path_factory.mktemp("work") / "w")
        run_git("commit", "-q", "--allow-empty", "-m", "first", cwd=work)
        run_git("push", "-q", c.git_url("proxy-1", PATH), "main", cwd=work)
        repository = c.repository(PATH)
        assert repository is not None
        big_history(c.nodes[NODE].storage_path / repository.replica_path)
        yield c


@pytest.fixture
def node_restarted(cluster: LocalCluster) -> Iterator[None]:
    """The test kills the node; it serves again afterwards."""
    try:
        yield
    finally:
        if not cluster.nodes[NODE].alive():
            cluster.start_process(NODE)
            cluster.wait_health({NODE: True})


def big_history(git_dir: Path) -> None:
    """Commits of incompressible blobs on main, written straight into the node's replica."""
    stream = bytearray()
    for i in range(BLOBS):
        data = secrets.token_bytes(BLOB_SIZE)
        stream += f"commit refs/heads/main\ncommitter t <t@t.invalid> {1_700_000_000 + i} +0000\n".encode()
        stream += b"data 4\nbig\n" + (b"from refs/heads/main^0\n" if i == 0 else b"")
        stream += b"M 644 inline blob%d.bin\ndata %d\n%s\n" % (i, len(data), data)
    subprocess.run(
        ["git", "-c", "pack.compression=0", "-c", "fastimport.unpackLimit=0", "fast-import", "--quiet"],
        cwd=git_dir,
        input=bytes(stream),
        check=True,
    )


def pkt(text: str) -> bytes:
    return f"{len(text) + 4:04x}{text}".encode()


async def test_an_upstream_failure_mid_response_leaves_the_body_incomplete(
    cluster: LocalCluster, node_restarted: None
) -> None:
    repository = cluster.repository(PATH)
    assert repository is not None
    git_dir = cluster.nodes[NODE].storage_path / repository.replica_path
    head = run_git("rev-parse", "refs/heads/main", cwd=git_dir).stdout.strip()
    port = cluster.layout.proxy("proxy-1").http_port
    auth = base64.b64encode(f"x:{cluster.token}".encode()).decode()
    body = pkt(f"want {head} ofs-delta\n") + b"0000" + pkt("done\n")
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/x-git-upload-pack-request"}
    received = 0
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/{PATH}.git/git-upload-pack", data=body, headers=headers
        ) as resp,
    ):
        assert resp.status == 200
        while received < HOLD_AFTER:
            received += len(await resp.content.read(64 * 1024))
        cluster.kill(NODE)
        with pytest.raises(aiohttp.ClientPayloadError):
            while chunk := await resp.content.read(1024 * 1024):
                received += len(chunk)
    assert received < BLOBS * BLOB_SIZE


class HoldingRelay:
    """A TCP relay to `port` that stops passing the answer on after HOLD_AFTER bytes of
    one connection until `release` is set; `held` is set when it starts holding."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.held = threading.Event()
        self.release = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)
        up = asyncio.create_task(self._pipe(client_r, up_w, hold=False))
        try:
            await self._pipe(up_r, client_w, hold=True)
        finally:
            up.cancel()
            client_w.close()
            up_w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: bool) -> None:
        passed = 0
        while data := await reader.read(64 * 1024):
            if hold and passed >= HOLD_AFTER and not self.release.is_set():
                self.held.set()
                await self.release.wait()
            writer.write(data)
            await writer.drain()
            passed += len(data)
        if writer.can_write_eof():
            writer.write_eof()


async def test_git_reports_an_error_when_the_node_dies_mid_clone(
    cluster: LocalCluster, node_restarted: None, tmp_path: Path
) -> None:
    relay = HoldingRelay(cluster.layout.proxy("proxy-1").http_port)
    port = await relay.start()
    url = f"http://x:{cluster.token}@127.0.0.1:{port}/{PATH}.git"
    clone = asyncio.create_task(
        asyncio.to_thread(
            subprocess.run,
            ["git", "clone", "--bare", url, str(tmp_path / "clone.git")],
            env={**GIT_ENV, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    )
    try:
        for _ in range(600):
            if relay.held.is_set() or clone.done():
                break
            await asyncio.sleep(0.1)
        assert relay.held.is_set(), f"the clone never reached the relay's hold: {await clone}"
        cluster.kill(NODE)
    finally:
        relay.release.set()
    done = await clone
    await relay.close()
    assert done.returncode != 0, done.stderr
    assert "error" in done.stderr.lower() or "fatal" in done.stderr.lower(), done.stderr
