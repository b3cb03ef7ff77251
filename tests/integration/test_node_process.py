"""A real node process: it starts, answers health checks and refuses bad tokens."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from cluster.testing import NodeProcess
from common.auth import bearer_metadata
from gitraft.v1 import server_pb2, server_pb2_grpc


def test_node_refuses_missing_or_wrong_token(tmp_path: Path, token: str) -> None:
    with NodeProcess("node-a", tmp_path, token).start() as node, grpc.insecure_channel(node.address) as ch:
        stub = server_pb2_grpc.ServerServiceStub(ch)
        for metadata in ((), bearer_metadata("wrong")):
            with pytest.raises(grpc.RpcError) as info:
                stub.ServerInfo(server_pb2.ServerInfoRequest(), metadata=metadata, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # The right token is served.
        info = stub.ServerInfo(server_pb2.ServerInfoRequest(), metadata=bearer_metadata(token), timeout=5)
        assert info.storage_name == "node-a"
        assert info.git_version
