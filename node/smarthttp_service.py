"""SmartHTTPService on a storage node (skeleton: every RPC answers UNIMPLEMENTED)."""

from __future__ import annotations

from gitraft.v1 import smarthttp_pb2_grpc
from node.storage import Storage


class SmartHTTPServicer(smarthttp_pb2_grpc.SmartHTTPServiceServicer):
    """Serves SmartHTTPService for one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
