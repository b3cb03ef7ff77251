"""The node's RefService tests, rerun through a proxy (see proxy_target.py)."""

from __future__ import annotations

from tests.integration.proxy_target import new_repo, node, node_stub
from tests.integration.test_node_refs import (
    pushed,
    stub,
    test_concurrent_compare_and_swap_has_one_winner,
    test_find_default_branch,
    test_list_refs_matches_for_each_ref,
    test_list_refs_streams_many_refs_in_batches,
    test_list_refs_with_head,
    test_missing_repository_and_bad_path,
    test_update_create_move_delete_in_one_transaction,
    test_update_is_all_or_none_on_old_value_mismatch,
    test_update_refuses_bad_names_and_oids,
    test_update_refuses_duplicates_conflicts_and_empty,
    test_update_runs_the_reference_transaction_hook,
)

__all__ = [
    "new_repo",
    "node",
    "node_stub",
    "pushed",
    "stub",
    "test_concurrent_compare_and_swap_has_one_winner",
    "test_find_default_branch",
    "test_list_refs_matches_for_each_ref",
    "test_list_refs_streams_many_refs_in_batches",
    "test_list_refs_with_head",
    "test_missing_repository_and_bad_path",
    "test_update_create_move_delete_in_one_transaction",
    "test_update_is_all_or_none_on_old_value_mismatch",
    "test_update_refuses_bad_names_and_oids",
    "test_update_refuses_duplicates_conflicts_and_empty",
    "test_update_runs_the_reference_transaction_hook",
]
