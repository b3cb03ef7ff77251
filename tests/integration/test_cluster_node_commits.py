"""The node's CommitService tests, rerun through a proxy (see proxy_target.py)."""

from __future__ import annotations

from tests.integration.proxy_target import new_repo, node, node_stub
from tests.integration.test_node_commits import (
    pushed,
    stub,
    test_find_commit_errors,
    test_find_commit_matches_git,
    test_get_blob,
    test_get_blob_errors,
    test_list_commits_bad_arguments,
    test_list_commits_pages_through_rev_list,
    test_list_commits_token_pins_the_start,
    test_tree_entry_errors,
    test_tree_entry_lists_a_tree,
    test_tree_entry_streams_a_blob_in_chunks,
)

__all__ = [
    "new_repo",
    "node",
    "node_stub",
    "pushed",
    "stub",
    "test_find_commit_errors",
    "test_find_commit_matches_git",
    "test_get_blob",
    "test_get_blob_errors",
    "test_list_commits_bad_arguments",
    "test_list_commits_pages_through_rev_list",
    "test_list_commits_token_pins_the_start",
    "test_tree_entry_errors",
    "test_tree_entry_lists_a_tree",
    "test_tree_entry_streams_a_blob_in_chunks",
]
