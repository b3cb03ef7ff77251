"""The node's RepositoryService tests, rerun through a proxy (see proxy_target.py).

Not rerun, because they are about one node's own disk or identity:
`test_wrong_storage_name_is_invalid_argument` (the proxy sets storage_name itself when
forwarding), `test_concurrent_creates_of_one_path_make_exactly_one_repository` (looks
for the client path on disk; replicas live under `@cluster/`) and
`test_the_start_sweep_removes_the_nodes_leftovers_and_leaves_repositories_alone` (no RPC at all).
"""

from __future__ import annotations

from tests.integration.proxy_target import new_repo, node, node_stub
from tests.integration.test_node_repository import (
    stub,
    test_bad_paths_are_invalid_argument_everywhere,
    test_checksum_empty_then_equal_for_equal_refs_whatever_the_packing,
    test_create_makes_a_bare_repository_with_head_on_default_branch,
    test_create_refuses_a_bad_default_branch,
    test_create_twice_is_already_exists,
    test_info_counts_refs_and_objects_then_optimize_packs_them,
    test_info_of_an_empty_repository,
    test_missing_repository_is_not_found,
    test_optimize_without_prune_keeps_unreachable_objects,
    test_remove_deletes_the_directory,
)

__all__ = [
    "new_repo",
    "node",
    "node_stub",
    "stub",
    "test_bad_paths_are_invalid_argument_everywhere",
    "test_checksum_empty_then_equal_for_equal_refs_whatever_the_packing",
    "test_create_makes_a_bare_repository_with_head_on_default_branch",
    "test_create_refuses_a_bad_default_branch",
    "test_create_twice_is_already_exists",
    "test_info_counts_refs_and_objects_then_optimize_packs_them",
    "test_info_of_an_empty_repository",
    "test_missing_repository_is_not_found",
    "test_optimize_without_prune_keeps_unreachable_objects",
    "test_remove_deletes_the_directory",
]
