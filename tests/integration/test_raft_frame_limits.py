"""A command too large for the Raft frame bound is refused when submitted (issue #7).

Followers close a connection whose frame exceeds `max_frame_after_auth`; a command
that large would be resent and refused forever, so the member refuses it up front
with INVALID_ARGUMENT and keeps committing the others. One real pysyncobj member in
this process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.metadata.config import RaftConfig
from cluster.metadata.store import RaftMetadataStore
from cluster.testing import free_port
from common.errors import InvalidArgumentError


async def test_an_oversized_command_is_refused_and_the_store_keeps_serving(tmp_path: Path) -> None:
    config = RaftConfig(
        self_addr=f"127.0.0.1:{free_port()}",
        password="pw",
        data_dir=tmp_path / "raft",
        max_frame_after_auth=1 << 20,
    )
    store = RaftMetadataStore(config)
    await store.start()
    try:
        await store.wait_ready(20)
        with pytest.raises(InvalidArgumentError, match="exceeds the limit"):
            await store.register_storage("huge", "x" * (1 << 20))
        await store.register_storage("small", "127.0.0.1:1")
        assert [s.name for s in await store.storages()] == ["small"]
    finally:
        await store.stop()
