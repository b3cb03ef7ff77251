"""A node exposes per-RPC counters on /metrics, including refused calls."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import pytest

from cluster.testing import free_port
from common.auth import bearer_metadata
from gitraft.v1 import repository_pb2, repository_pb2_grpc, shared_pb2
from node.config import NodeConfig
from node.server import NodeServer


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def sample(text: str, needle: str) -> float:
    for line in text.splitlines():
        if line.startswith("gitraft_grpc_requests_total{") and all(n in line for n in needle.split("|")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def counted(port: int, needle: str, expected: float, within: float = 5.0) -> float:
    """The counter matching `needle` once it reaches `expected`, or its value after
    `within` seconds. A refused call is counted just after the client has its answer: grpc's
    `context.abort` sends the status before it raises, and the metrics interceptor counts
    the call as that exception leaves it (the server runs on this test's event loop, so
    it must be let run: scrapes go to a thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = sample(await asyncio.to_thread(scrape, port), needle)
        if value >= expected or loop.time() > deadline:
            return value
        await asyncio.sleep(0.02)


async def test_rpc_counters(tmp_path: Path, token: str) -> None:
    config = NodeConfig(
        name="node-m",
        listen_addr=f"127.0.0.1:{free_port()}",
        storage_path=tmp_path / "storage",
        token=token,
        metrics_addr=f"127.0.0.1:{free_port()}",
    )
    server = NodeServer(config)
    port = await server.start()
    try:
        method = 'method="/gitraft.v1.RepositoryService/RepositoryExists"'
        before = scrape(server.metrics_port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = repository_pb2_grpc.RepositoryServiceStub(channel)
            request = repository_pb2.RepositoryExistsRequest(
                repository=shared_pb2.Repository(relative_path="a.git")
            )
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.RepositoryExists(request, metadata=bearer_metadata("wrong"), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError):
                bad = repository_pb2.RepositoryExistsRequest(
                    repository=shared_pb2.Repository(relative_path="../x.git")
                )
                await stub.RepositoryExists(bad, metadata=bearer_metadata(token), timeout=5)
        for code in ("UNAUTHENTICATED", "INVALID_ARGUMENT"):
            needle = f'{method}|code="{code}"|component="node"'
            expected = sample(before, needle) + 1
            assert await counted(server.metrics_port, needle, expected) == expected, code
        assert "gitraft_grpc_request_duration_seconds_bucket" in scrape(server.metrics_port)
    finally:
        await server.stop(0)
