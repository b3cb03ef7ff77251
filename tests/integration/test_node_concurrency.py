"""Concurrency limits on a real node (issue #7, finding 5): 200 concurrent
UploadPackSession streams from one client used to start 200 `git upload-pack`
processes. With the node's default limits (node.config.DEFAULT_CONCURRENCY) at most
`max_per_repo` run on one repository, `max_queue_size` more wait, the rest get
RESOURCE_EXHAUSTED at once; the waiting ones are served as slots free up, and the node
keeps serving afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster.testing import NodeProcess, free_port
from common.auth import bearer_metadata
from gitraft.v1 import repository_pb2, repository_pb2_grpc, shared_pb2
from node.config import DEFAULT_CONCURRENCY
from tests.integration.conftest import NewRepo, commit_file, git_cli
from tests.integration.gateway_helpers import git_children
from tests.integration.tuned_node import TunedNode

SESSIONS = 200
METHOD = "/gitraft.v1.RepositoryService/UploadPackSession"
LIMIT = next(limit for limit in DEFAULT_CONCURRENCY if limit.rpc == METHOD)
ADMITTED = LIMIT.max_per_repo  # one repository: the per-repository limit binds first
QUEUED = LIMIT.max_queue_size
REJECTED = SESSIONS - ADMITTED - QUEUED


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    workdir = tmp_path_factory.mktemp("concurrency")
    process = NodeProcess(
        "node-c", workdir, secrets.token_hex(16), metrics_port=free_port(), log_level="info"
    )
    with process.start() as started:
        yield started


def make_repo(node: NodeProcess, tmp_path: Path) -> shared_pb2.Repository:
    """A repository with one commit on `node`'s disk."""
    relative = f"busy/{secrets.token_hex(4)}.git"
    tmp_path.mkdir(parents=True, exist_ok=True)
    git_cli("init", "-q", "--bare", str(node.storage_path / relative), cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    git_cli("init", "-q", "-b", "main", cwd=work)
    commit_file(work, "a.txt", "one\n", "first")
    git_cli("push", "-q", str(node.storage_path / relative), "main", cwd=work)
    return shared_pb2.Repository(relative_path=relative)


@pytest.fixture
def repo(node: NodeProcess, tmp_path: Path) -> shared_pb2.Repository:
    return make_repo(node, tmp_path)


def gauges(node: NodeProcess) -> dict[tuple[str, str], float]:
    """(metric name, scope) -> value of the concurrency gauges of METHOD."""
    with urllib.request.urlopen(f"http://{node.metrics_addr}/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("gitraft_concurrency_") and sample.labels.get("method") == METHOD:
                values[(sample.name, sample.labels["scope"])] = sample.value
    return values


async def eventually(condition: Any, what: str) -> None:
    """Poll `condition` for a generous 60 s (a loaded machine); no timing asserted."""
    for _ in range(1200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached within 60 s: {what}")


async def first_answer(call: Any) -> Any:
    """The first message of a session (the ref advertisement), or its error status."""
    try:
        return await call.read()
    except grpc.aio.AioRpcError as exc:
        return exc


async def finish(call: Any) -> int:
    """End an admitted session cleanly (no wants); its exit status."""
    await call.write(repository_pb2.UploadPackSessionRequest(stdin=b"0000"))
    await call.done_writing()
    status = -1
    while (message := await call.read()) is not grpc.aio.EOF:
        if message.exited:
            status = message.exit_status
    return status


async def serve_all(calls: list[Any], answers: list[Any], count: int, check: Any) -> None:
    """Finish admitted sessions as they are admitted until `count` are done; `check()`
    must hold before every round."""
    finished: set[int] = set()
    while len(finished) < count:
        await eventually(
            lambda: any(a.done() and not _refused(a) and i not in finished for i, a in enumerate(answers)),
            "a newly admitted session",
        )
        assert check()
        for i, answer in enumerate(answers):
            if answer.done() and not _refused(answer) and i not in finished:
                assert await finish(calls[i]) == 0
                finished.add(i)


async def open_sessions(address: str, token: str, repo: shared_pb2.Repository, count: int) -> Any:
    """`count` UploadPackSession calls on `repo`, each with its first message sent, and a
    task per call for its first answer."""
    channel = grpc.aio.insecure_channel(address)
    stub = repository_pb2_grpc.RepositoryServiceStub(channel)
    calls = []
    for _ in range(count):
        call = stub.UploadPackSession(metadata=bearer_metadata(token), timeout=120)
        await call.write(repository_pb2.UploadPackSessionRequest(repository=repo))
        calls.append(call)
    return channel, calls, [asyncio.ensure_future(first_answer(call)) for call in calls]


async def test_200_sessions_do_not_start_200_git_processes(
    node: NodeProcess, repo: shared_pb2.Repository
) -> None:
    assert node.process is not None
    md = bearer_metadata(node.token)
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = repository_pb2_grpc.RepositoryServiceStub(channel)
        calls = []
        for _ in range(SESSIONS):
            call = stub.UploadPackSession(metadata=md, timeout=120)
            await call.write(repository_pb2.UploadPackSessionRequest(repository=repo))
            calls.append(call)
        answers = [asyncio.ensure_future(first_answer(call)) for call in calls]
        try:
            await eventually(lambda: sum(a.done() for a in answers) >= ADMITTED + REJECTED, "answers")
            served = [i for i, a in enumerate(answers) if a.done() and not _refused(a)]
            refused = [a.result() for a in answers if a.done() and _refused(a)]
            children = git_children(node.process.pid)
            assert children <= ADMITTED, f"{children} git processes for {SESSIONS} sessions"
            assert len(served) == ADMITTED
            assert len(refused) == REJECTED
            for error in refused:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "too many concurrent UploadPackSession calls on repository" in (error.details() or "")
            values = gauges(node)
            assert values[("gitraft_concurrency_in_flight", "repository")] == ADMITTED
            assert values[("gitraft_concurrency_queued", "repository")] == QUEUED

            # The waiting sessions are served as slots free up, never more at once.
            pid = node.process.pid
            await serve_all(calls, answers, ADMITTED + QUEUED, lambda: git_children(pid) <= ADMITTED)
        finally:
            for call in calls:
                call.cancel()
        await eventually(lambda: git_children(node.process.pid) == 0, "no git left")
        await eventually(
            lambda: gauges(node).get(("gitraft_concurrency_in_flight", "repository")) == 0,
            "in-flight gauge back to 0",
        )
        # The node keeps serving.
        call = stub.UploadPackSession(metadata=md, timeout=60)
        await call.write(repository_pb2.UploadPackSessionRequest(repository=repo))
        assert not _refused_answer(await first_answer(call))
        assert await finish(call) == 0


def _refused(answer: asyncio.Future[Any]) -> bool:
    return _refused_answer(answer.result())


def _refused_answer(answer: Any) -> bool:
    return isinstance(answer, grpc.aio.AioRpcError)


TUNED = """
[[concurrency]]
rpc = "/gitraft.v1.RepositoryService/UploadPackSession"
max_in_flight = 2
max_per_repo = 0
max_queue_size = 1
max_queue_wait = 1.0
"""


async def test_limits_from_the_toml_bound_the_whole_node_and_the_wait(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A `[[concurrency]]` table: two sessions on the node at once (different
    repositories), one more waits, and is refused once it has waited max_queue_wait."""
    workdir = tmp_path_factory.mktemp("tuned")
    node = TunedNode("node-l", workdir, secrets.token_hex(16), metrics_port=free_port(), extra_toml=TUNED)
    with node.start():
        repos = [make_repo(node, tmp_path / str(i)) for i in range(4)]
        md = bearer_metadata(node.token)
        async with grpc.aio.insecure_channel(node.address) as channel:
            stub = repository_pb2_grpc.RepositoryServiceStub(channel)

            async def open_session(repo: shared_pb2.Repository) -> Any:
                call = stub.UploadPackSession(metadata=md, timeout=60)
                await call.write(repository_pb2.UploadPackSessionRequest(repository=repo))
                return call

            running = [await open_session(repo) for repo in repos[:2]]
            for call in running:
                assert not _refused_answer(await first_answer(call))
            waiting = await open_session(repos[2])
            await eventually(
                lambda: gauges(node).get(("gitraft_concurrency_queued", "rpc")) == 1, "one waiting"
            )
            queue_full = await first_answer(await open_session(repos[3]))
            queue_timeout = await first_answer(waiting)
            assert isinstance(queue_full, grpc.aio.AioRpcError) and isinstance(
                queue_timeout, grpc.aio.AioRpcError
            )
            assert queue_full.code() == queue_timeout.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "UploadPackSession calls on this node: 2 running, 1 waiting" in (
                queue_full.details() or ""
            )
            assert "waited 1 s for a UploadPackSession slot on this node" in (queue_timeout.details() or "")
            for call in running:
                assert await finish(call) == 0
            call = await open_session(repos[3])
            assert not _refused_answer(await first_answer(call))
            assert await finish(call) == 0


EXTRA = 10


async def test_sessions_beyond_the_limit_get_resource_exhausted_with_a_clear_message(
    node: Any, new_repo: NewRepo, work_tree: Path
) -> None:
    """With `node` a node, or a proxy in front (test_cluster_node_concurrency.py): the
    node's refusal reaches the client as it is, the waiting sessions are served."""
    repo, path = new_repo()
    git_cli("push", "-q", str(path), "main", cwd=work_tree)
    channel, calls, answers = await open_sessions(node.address, node.token, repo, ADMITTED + QUEUED + EXTRA)
    try:
        await eventually(lambda: sum(a.done() for a in answers) >= ADMITTED + EXTRA, "answers")
        refused = [a.result() for a in answers if a.done() and _refused(a)]
        assert len(refused) == EXTRA
        for error in refused:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too many concurrent UploadPackSession calls on repository" in (error.details() or "")
            assert f"{ADMITTED} running, {QUEUED} waiting; retry later" in (error.details() or "")
        await serve_all(calls, answers, ADMITTED + QUEUED, lambda: True)
    finally:
        for call in calls:
            call.cancel()
        await channel.close()
