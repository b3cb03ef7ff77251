"""NodePool: metadata of proxy-to-node calls, unknown storages, unreachable nodes."""

from __future__ import annotations

import pytest

from cluster.local.ports import refused_address
from cluster.proxy.nodes import NodePool
from common.errors import NotFoundError, UnavailableError
from common.logs import CORRELATION_METADATA_KEY, correlation_id


def test_calls_carry_the_node_token_and_the_correlation_id() -> None:
    pool = NodePool("secret", {"a": "127.0.0.1:1"})
    token = correlation_id.set("cid-1")
    try:
        metadata = dict(pool.metadata())
    finally:
        correlation_id.reset(token)
    assert metadata == {"authorization": "Bearer secret", CORRELATION_METADATA_KEY: "cid-1"}
    assert pool.node_address("a").token == "secret"


def test_unknown_storage() -> None:
    with pytest.raises(NotFoundError, match="'z'"):
        NodePool("t").address("z")


async def test_an_unreachable_node_is_unavailable_within_the_bound() -> None:
    with refused_address() as address:
        pool = NodePool("t", {"a": address})
        try:
            with pytest.raises(UnavailableError, match="'a' unreachable"):
                await pool.connect("a", within=0.3)
        finally:
            await pool.close()
