"""The node's error-hygiene path tests (test_node_error_hygiene.py), rerun through a proxy
with the clients' token (see proxy_target.py)."""

from __future__ import annotations

from tests.integration.proxy_target import new_repo, node, node_stub
from tests.integration.test_node_error_hygiene import (
    test_an_unusable_path_is_invalid_argument_with_a_clean_message,
)

__all__ = [
    "new_repo",
    "node",
    "node_stub",
    "test_an_unusable_path_is_invalid_argument_with_a_clean_message",
]
