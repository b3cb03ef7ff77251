"""ServerService on a storage node (skeleton: every RPC answers UNIMPLEMENTED)."""

from __future__ import annotations

from gitraft.v1 import server_pb2_grpc
from node.storage import Storage


class ServerServicer(server_pb2_grpc.ServerServiceServicer):
    """Serves ServerService for one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
