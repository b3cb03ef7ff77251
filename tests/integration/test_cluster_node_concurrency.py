"""The node's concurrency refusals seen through a proxy (see proxy_target.py): the
client gets the node's RESOURCE_EXHAUSTED and message unchanged."""

from __future__ import annotations

from tests.integration.proxy_target import new_repo, node, node_stub
from tests.integration.test_node_concurrency import (
    test_sessions_beyond_the_limit_get_resource_exhausted_with_a_clear_message,
)

__all__ = [
    "new_repo",
    "node",
    "node_stub",
    "test_sessions_beyond_the_limit_get_resource_exhausted_with_a_clear_message",
]
