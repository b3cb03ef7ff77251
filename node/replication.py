"""Node-to-node replication (skeleton: answers UNIMPLEMENTED)."""

from __future__ import annotations

from node.storage import Storage


class ReplicationMixin:
    """ReplicateRepository and UploadPackSession, mixed into RepositoryServicer."""

    storage: Storage
