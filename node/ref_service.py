"""RefService on a storage node (skeleton: every RPC answers UNIMPLEMENTED)."""

from __future__ import annotations

from gitraft.v1 import ref_pb2_grpc
from node.storage import Storage


class RefServicer(ref_pb2_grpc.RefServiceServicer):
    """Serves RefService for one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
