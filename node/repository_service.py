"""RepositoryService on a storage node (skeleton: every RPC answers UNIMPLEMENTED)."""

from __future__ import annotations

from gitraft.v1 import repository_pb2_grpc
from node.replication import ReplicationMixin
from node.storage import Storage


class RepositoryServicer(ReplicationMixin, repository_pb2_grpc.RepositoryServiceServicer):
    """Serves RepositoryService for one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
