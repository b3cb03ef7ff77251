"""common.limiter: slots, bounded queues, waits, hand-over, cancellation, config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.config import ConfigError
from common.errors import ResourceExhaustedError
from common.limiter import ConcurrencyLimit, Limiter, Refused, RpcLimits, repository_of
from gitraft.v1 import shared_pb2, smarthttp_pb2
from node.config import DEFAULT_CONCURRENCY, NodeConfig, load_node_config

RPC = "/gitraft.v1.SmartHTTPService/PostUploadPack"


async def test_a_full_limiter_queues_in_order_and_hands_slots_over() -> None:
    limiter = Limiter(1, 2, (RPC, "rpc"))
    await limiter.acquire(10)
    order: list[str] = []

    async def wait(name: str) -> None:
        await limiter.acquire(10)
        order.append(name)

    first, second = asyncio.create_task(wait("first")), asyncio.create_task(wait("second"))
    await asyncio.sleep(0)
    assert limiter.waiting == 2 and limiter.running == 1
    with pytest.raises(Refused) as info:
        await limiter.acquire(10)
    assert info.value.reason == "queue_full"
    limiter.release()
    await first
    assert order == ["first"] and limiter.running == 1
    limiter.release()
    await second
    limiter.release()
    assert order == ["first", "second"] and limiter.idle


async def test_a_wait_that_runs_out_is_refused_and_leaves_the_queue() -> None:
    limiter = Limiter(1, 4, (RPC, "rpc"))
    await limiter.acquire(10)
    with pytest.raises(Refused) as info:
        await limiter.acquire(0.01)
    assert info.value.reason == "queue_timeout"
    assert limiter.waiting == 0
    limiter.release()
    assert limiter.idle


async def test_a_cancelled_waiter_holds_nothing() -> None:
    limiter = Limiter(1, 4, (RPC, "rpc"))
    await limiter.acquire(10)
    waiter = asyncio.create_task(limiter.acquire(10))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release()
    assert limiter.idle


async def test_rpc_limits_refuse_with_resource_exhausted_and_forget_idle_repositories() -> None:
    limits = RpcLimits(
        ConcurrencyLimit(RPC, max_in_flight=2, max_per_repo=1, max_queue_size=0, max_queue_wait=1)
    )
    async with limits.slot("s/a.git"):
        with pytest.raises(ResourceExhaustedError, match=r"on repository 's/a\.git'"):
            async with limits.slot("s/a.git"):
                pass
        async with limits.slot("s/b.git"):
            with pytest.raises(ResourceExhaustedError, match="PostUploadPack calls on this node: 2 running"):
                async with limits.slot("s/c.git"):
                    pass
    assert not limits._repositories


def test_the_repository_of_a_request() -> None:
    repo = shared_pb2.Repository(storage_name="n", relative_path="./a//b.git")
    assert repository_of(smarthttp_pb2.PostUploadPackRequest(repository=repo)) == "n/a/b.git"
    assert repository_of(smarthttp_pb2.PostUploadPackRequest()) is None
    assert repository_of(None) is None


def test_config_tables_replace_the_default_of_their_rpc(tmp_path: Path) -> None:
    config_file = tmp_path / "node.toml"
    config_file.write_text(
        'token = "t"\n[[concurrency]]\n'
        f'rpc = "{RPC}"\nmax_in_flight = 3\nmax_per_repo = 1\nmax_queue_size = 5\nmax_queue_wait = 2\n'
    )
    limits = {limit.rpc: limit for limit in load_node_config(config_file).concurrency_limits()}
    assert limits[RPC] == ConcurrencyLimit(RPC, 3, 1, 5, 2.0)
    assert len(limits) == len(DEFAULT_CONCURRENCY)
    assert NodeConfig(token="t").concurrency_limits() == list(DEFAULT_CONCURRENCY)


@pytest.mark.parametrize(
    "table",
    [
        'rpc = "/gitraft.v1.SmartHTTPService/NoSuchRpc"\n',
        'rpc = "PostUploadPack"\n',
        f'rpc = "{RPC}"\nmax_in_flight = -1\n',
        f'rpc = "{RPC}"\nmax_queue_wait = 0\n',
        f'rpc = "{RPC}"\nmax_inflight = 3\n',
    ],
)
def test_bad_concurrency_tables_stop_the_node(tmp_path: Path, table: str) -> None:
    config_file = tmp_path / "node.toml"
    config_file.write_text(f'token = "t"\n[[concurrency]]\n{table}')
    with pytest.raises(ConfigError, match="concurrency"):
        load_node_config(config_file)
