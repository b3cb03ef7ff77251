"""The git config policy tests (test_node_config_policy.py), rerun through a proxy with
the clients' token (see proxy_target.py): finding 1 of issue #7 was reached this way."""

from __future__ import annotations

from tests.integration.proxy_target import new_repo, node, node_stub
from tests.integration.test_node_config_policy import (
    _no_stray_marker,
    hook_tree,
    smarthttp,
    test_a_push_cannot_make_the_repository_a_work_tree_and_run_a_hook,
    test_a_push_cannot_read_a_file_through_an_fsck_skip_list,
    test_allowed_keys_still_work,
    test_every_dangerous_or_malformed_key_is_refused_naming_the_key,
    test_too_many_or_too_long_options_are_invalid_argument,
)

__all__ = [
    "_no_stray_marker",
    "hook_tree",
    "new_repo",
    "node",
    "node_stub",
    "smarthttp",
    "test_a_push_cannot_make_the_repository_a_work_tree_and_run_a_hook",
    "test_a_push_cannot_read_a_file_through_an_fsck_skip_list",
    "test_allowed_keys_still_work",
    "test_every_dangerous_or_malformed_key_is_refused_naming_the_key",
    "test_too_many_or_too_long_options_are_invalid_argument",
]
