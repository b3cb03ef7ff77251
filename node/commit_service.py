"""CommitService on a storage node (skeleton: every RPC answers UNIMPLEMENTED)."""

from __future__ import annotations

from gitraft.v1 import commit_pb2_grpc
from node.storage import Storage


class CommitServicer(commit_pb2_grpc.CommitServiceServicer):
    """Serves CommitService for one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
