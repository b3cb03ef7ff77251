"""Long streaming writes (issue #13): the intent is renewed while bytes flow, the node
call is cut off when they stop, and a closed (repaired) intent ends the call.

The store is the real state machine (LocalStore); the node's stream is a fake whose
pace the test sets. The intent's lifetime is a fraction of a second, so these tests
take about a second each; they assert outcomes, never durations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cluster.observability.metrics import ProxyMetrics
from cluster.proxy.coordinator import Coordinator, NodeError
from cluster.proxy.intent_renewal import IntentKeeper
from cluster.proxy.nodes import NodePool
from cluster.proxy.router import MethodInfo, Registry
from common.errors import DeadlineExceededError
from gitraft.v1 import shared_pb2, smarthttp_pb2
from tests.unit.helpers import local_store
from tests.unit.test_router_coordinator import NOW, LocalStore

REGISTRY = Registry.from_package()
RECEIVE_PACK = "/gitraft.v1.SmartHTTPService/PostReceivePack"
LIFETIME = 0.4  # write_intent_timeout of these tests


class PacedNode:
    """A primary whose PostReceivePack reads the client's messages, then answers with
    `chunks` messages `pause` seconds apart (a closure hook runs before each), within
    the call's timeout as gRPC would enforce it."""

    def __init__(self, chunks: int, pause: float) -> None:
        self.chunks = chunks
        self.pause = pause
        self.received = 0
        self.before_chunk: Any = None

    async def call_stream(
        self, info: MethodInfo, storage: str, first: bytes, rest: Any, context: Any, limit: Any = None
    ) -> AsyncIterator[bytes]:
        started = time.monotonic()

        def check_deadline() -> None:  # what gRPC does with the call's timeout
            if limit is not None and time.monotonic() - started > limit:
                raise NodeError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")

        if rest is not None:
            async for _ in rest:
                check_deadline()
                self.received += 1
        for i in range(self.chunks):
            await asyncio.sleep(self.pause)
            check_deadline()
            if self.before_chunk is not None:
                await self.before_chunk(i)
            yield f"chunk {i}".encode()

    async def connect(self, storage: str, within: float = 0.0) -> None:
        return None

    async def checksum(self, repo: Any, storage: str) -> str:
        return "1" * 40  # every replica alike: a failed write changed nothing


def coordinator_for(store: LocalStore, node: PacedNode, monkeypatch: pytest.MonkeyPatch) -> Coordinator:
    c = Coordinator(
        proxy_name="p1",
        store=store,
        registry=REGISTRY,
        nodes=NodePool("token"),
        metrics=ProxyMetrics(),
        write_intent_timeout=LIFETIME,
        clock=lambda: NOW,
    )
    monkeypatch.setattr(c, "call_stream", node.call_stream)
    monkeypatch.setattr(c.nodes, "connect", node.connect)
    monkeypatch.setattr(c, "checksum", node.checksum)
    return c


async def push(c: Coordinator, messages: int = 1, pause: float = 0.0) -> list[bytes]:
    info = REGISTRY.get(RECEIVE_PACK)
    assert info is not None
    first = smarthttp_pb2.PostReceivePackRequest(repository=shared_pb2.Repository(relative_path="g/r.git"))

    async def requests() -> AsyncIterator[bytes]:
        yield first.SerializeToString()
        for _ in range(messages - 1):
            await asyncio.sleep(pause)
            yield smarthttp_pb2.PostReceivePackRequest(data=b"pack bytes").SerializeToString()

    return [chunk async for chunk in c.stream(info, requests(), None)]


async def generation(store: LocalStore, storage: str = "a") -> int:
    repo = await store.get_repository_by_id("r1")
    assert repo is not None
    return next(r.generation for r in repo.replicas if r.storage == storage)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    async with local_store(tmp_path / "raft", healthy=lambda _: True) as s:
        await s.create_repository("r1", "g/r.git", "@cluster/r1.git", ["a", "b", "c"], "a", 3, NOW)
        yield s


async def test_a_push_slower_than_the_intent_timeout_is_acknowledged_while_bytes_flow(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client uploads for about 4 lifetimes, then the node answers for about 2 more.
    node = PacedNode(chunks=8, pause=LIFETIME / 4)
    c = coordinator_for(store, node, monkeypatch)
    renewed: list[str] = []
    real_renew = store.renew_intent

    async def counting_renew(intent_id: str, deadline: float, now: float) -> bool:
        renewed.append(intent_id)
        return await real_renew(intent_id, deadline, now)

    monkeypatch.setattr(store, "renew_intent", counting_renew)
    chunks = await push(c, messages=17, pause=LIFETIME / 4)
    assert len(chunks) == 8 and node.received == 16
    assert await generation(store) == 0
    assert renewed, "a write longer than its intent's lifetime must renew it"
    assert await store.open_intents("r1") == []


async def test_a_push_that_stops_making_progress_is_cut_off_and_not_acknowledged(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = PacedNode(chunks=2, pause=LIFETIME * 3)  # silent for three lifetimes
    c = coordinator_for(store, node, monkeypatch)
    with pytest.raises(DeadlineExceededError, match="no progress"):
        await push(c)
    assert await generation(store) == -1
    assert await store.open_intents("r1") == []  # closed as failed, not left open


async def test_a_push_whose_intent_was_repaired_meanwhile_is_ended(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The leader repaired the intent (e.g. this proxy was paused past its deadline):
    # the next renewal finds it closed and the call ends without an acknowledgement.
    node = PacedNode(chunks=12, pause=LIFETIME / 4)
    c = coordinator_for(store, node, monkeypatch)

    async def repair_first(i: int) -> None:
        if i == 0:
            (intent,) = await store.open_intents("r1")
            await store.finish_write(intent.intent_id, [], [], intent.deadline + 1, repair=True)

    node.before_chunk = repair_first
    with pytest.raises(DeadlineExceededError, match="closed"):
        await push(c)
    assert await generation(store) == -1


async def test_no_request_message_reaches_the_node_after_the_cutoff(store: LocalStore) -> None:
    # A proxy paused longer than its intent's lifetime resumes: the intent may have been
    # repaired meanwhile, so the rest of the client's push must not be relayed.
    clock = [0.0]
    keeper = IntentKeeper(store, "i", lifetime=LIFETIME, margin=0.1, monotonic=lambda: clock[0])

    async def client() -> AsyncIterator[bytes]:
        yield b"first half"
        clock[0] += LIFETIME * 5  # the pause
        yield b"second half"

    relayed: list[bytes] = []
    with pytest.raises(DeadlineExceededError, match="no progress"):
        async for message in keeper.relay(client()):
            relayed.append(message)
    assert relayed == [b"first half"]
