"""The `gitraft verify` and `gitraft jobs retry` subcommands (the real executable, as a
subprocess) against an in-process ClusterService that answers from fixed messages: the
CLI's side of the contract (requests sent, tables and JSON printed, exit codes). The
server side is tested where it is implemented. Also: a ClusterService method no server
implements is refused UNIMPLEMENTED, with no exception class name in the message; and a
read that a minority proxy cannot answer goes to the next proxy, a change does not."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from common.auth import TokenAuthInterceptor
from common.errors import UnavailableError
from common.interceptors import ErrorInterceptor
from gitraft.v1 import cluster_pb2, cluster_pb2_grpc

TOKEN = "fake-token"


class FakeCluster(cluster_pb2_grpc.ClusterServiceServicer):
    """Answers VerifyRepositories and RetryReplicationJobs from fixed data; records requests."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def VerifyRepositories(self, request: Any, context: Any) -> cluster_pb2.VerifyRepositoriesResponse:
        self.requests.append(request)
        ok = cluster_pb2.ReplicaChecksum(
            storage="node-a", generation=4, checksum="ab" * 20, default_branch="refs/heads/main", matches=True
        )
        bad = cluster_pb2.ReplicaChecksum(
            storage="node-b",
            generation=4,
            checksum="cd" * 20,
            default_branch="refs/heads/main",
            matches=False,
        )
        down = cluster_pb2.ReplicaChecksum(storage="node-c", generation=3, error="storage unreachable")
        repo = cluster_pb2.RepositoryVerification(
            relative_path="group/a.git",
            primary="node-a",
            replicas=[ok, bad, down],
            repairs_scheduled=["node-b"],
        )
        return cluster_pb2.VerifyRepositoriesResponse(repositories=[repo], mismatches=1)

    async def RetryReplicationJobs(
        self, request: Any, context: Any
    ) -> cluster_pb2.RetryReplicationJobsResponse:
        self.requests.append(request)
        return cluster_pb2.RetryReplicationJobsResponse(
            retried=[7, 9] if request.all_dead else request.job_ids
        )


@pytest.fixture
async def fake() -> AsyncIterator[tuple[str, FakeCluster]]:
    servicer = FakeCluster()
    server = grpc.aio.server(interceptors=[TokenAuthInterceptor(TOKEN), ErrorInterceptor()])
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)


async def gitraft(address: str, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    import asyncio

    argv = [sys.executable, "-m", "cluster.cli.main", *args, "--proxy", address, "--token", token]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    # A bound on a hung command, not a latency check: 60 s ran out at load 30.
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return subprocess.CompletedProcess(argv, proc.returncode or 0, out.decode(), err.decode())


async def test_verify_prints_each_replica_and_exits_1_on_a_mismatch(fake: tuple[str, FakeCluster]) -> None:
    address, servicer = fake
    done = await gitraft(address, "verify", "group/a.git", "group/b.git")
    assert done.returncode == 1, done.stderr
    assert list(servicer.requests[-1].relative_paths) == ["group/a.git", "group/b.git"]
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "STORAGE", "GENERATION", "CHECKSUM", "HEAD", "STATE"]
    assert "MISMATCH" in lines[2] and "node-b" in lines[2]
    assert "ERROR: storage unreachable" in lines[3]
    assert "1 repository verified, 1 mismatch" in done.stdout
    assert "repair scheduled: group/a.git on node-b" in done.stdout


async def test_verify_json(fake: tuple[str, FakeCluster]) -> None:
    address, servicer = fake
    done = await gitraft(address, "verify", "--json")
    assert done.returncode == 1, done.stderr
    assert list(servicer.requests[-1].relative_paths) == []
    answer = json.loads(done.stdout)
    assert answer["mismatches"] == 1
    repo = answer["repositories"][0]
    assert repo["repairs_scheduled"] == ["node-b"]
    assert [(r["storage"], r["matches"], r["error"]) for r in repo["replicas"]] == [
        ("node-a", True, ""),
        ("node-b", False, ""),
        ("node-c", False, "storage unreachable"),
    ]


async def test_jobs_retry_by_id_and_dead(fake: tuple[str, FakeCluster]) -> None:
    address, servicer = fake
    done = await gitraft(address, "jobs", "retry", "3", "5")
    assert done.returncode == 0, done.stderr
    assert list(servicer.requests[-1].job_ids) == [3, 5] and not servicer.requests[-1].all_dead
    assert done.stdout.strip() == "retried 2 jobs: 3, 5"
    done = await gitraft(address, "jobs", "retry", "--dead", "--json")
    assert done.returncode == 0, done.stderr
    assert servicer.requests[-1].all_dead
    assert json.loads(done.stdout) == {"retried": [7, 9]}


async def test_jobs_retry_needs_ids_or_dead(fake: tuple[str, FakeCluster]) -> None:
    address, servicer = fake
    done = await gitraft(address, "jobs", "retry")
    assert done.returncode == 2
    assert done.stderr.strip() == "gitraft jobs: name job ids or pass --dead"
    assert servicer.requests == []


async def test_bad_token_is_refused_with_exit_4(fake: tuple[str, FakeCluster]) -> None:
    address, _ = fake
    done = await gitraft(address, "verify", token="wrong")
    assert done.returncode == 4
    assert done.stderr.startswith("gitraft verify: token refused by")
    assert "Traceback" not in done.stderr


async def test_unimplemented_method_is_refused_unimplemented_without_class_names(
    fake: tuple[str, FakeCluster],
) -> None:
    address, _ = fake
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CheckCluster(
                cluster_pb2.CheckClusterRequest(),
                metadata=(("authorization", f"Bearer {TOKEN}"),),
                timeout=10,
            )
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Error" not in (err.value.details() or "")
    done = await gitraft(address, "check")
    assert done.returncode == 4
    assert "does not serve CheckCluster" in done.stderr


class Minority(cluster_pb2_grpc.ClusterServiceServicer):
    """A proxy cut off from the Raft majority: every answer needs a quorum it lacks."""

    async def ClusterStatus(self, request: Any, context: Any) -> cluster_pb2.ClusterStatusResponse:
        raise UnavailableError("no quorum: 'noop' not committed within 5s")

    async def SetPrimary(self, request: Any, context: Any) -> cluster_pb2.SetPrimaryResponse:
        raise UnavailableError("no quorum: 'set_primary' not committed within 5s (outcome unknown)")


class Majority(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def ClusterStatus(self, request: Any, context: Any) -> cluster_pb2.ClusterStatusResponse:
        self.calls.append("ClusterStatus")
        return cluster_pb2.ClusterStatusResponse(
            answered_by="proxy-2",
            proxies=[cluster_pb2.ProxyStatus(name="proxy-2", raft_role="leader", reachable=True)],
        )

    async def SetPrimary(self, request: Any, context: Any) -> cluster_pb2.SetPrimaryResponse:
        self.calls.append("SetPrimary")
        return cluster_pb2.SetPrimaryResponse()


async def serve(servicer: cluster_pb2_grpc.ClusterServiceServicer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=[TokenAuthInterceptor(TOKEN), ErrorInterceptor()])
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_a_read_goes_to_the_next_proxy_when_the_first_has_no_quorum_a_change_does_not() -> None:
    majority = Majority()
    first, minority_address = await serve(Minority())
    second, majority_address = await serve(majority)
    try:
        both = f"{minority_address},{majority_address}"
        done = await gitraft(both, "status")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[1] == "(answered by proxy-2)"
        done = await gitraft(both, "failover", "g/r.git", "--to", "node-b")
        assert done.returncode == 3
        assert done.stderr.strip() == (
            f"gitraft failover: cluster unavailable at {minority_address}:"
            " no quorum: 'set_primary' not committed within 5s (outcome unknown)"
        )
        assert majority.calls == ["ClusterStatus"]
    finally:
        await first.stop(0)
        await second.stop(0)
