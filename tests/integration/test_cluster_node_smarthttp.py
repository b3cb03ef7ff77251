"""The node's SmartHTTPService tests, rerun through a proxy (see proxy_target.py).

Not rerun: `test_a_client_going_away_kills_git` (counts the git children of the node
process, which a proxy in front does not have).
"""

from __future__ import annotations

from tests.integration.proxy_target import new_repo, node, node_stub
from tests.integration.test_node_smarthttp import (
    channel,
    pushed_repo,
    smarthttp,
    test_bad_requests,
    test_info_refs_has_no_preamble_and_speaks_v2_on_request,
    test_missing_or_wrong_token_is_unauthenticated,
    test_post_upload_pack_sends_a_pack,
    test_upload_pack_session_is_full_duplex,
)

__all__ = [
    "channel",
    "new_repo",
    "node",
    "node_stub",
    "pushed_repo",
    "smarthttp",
    "test_bad_requests",
    "test_info_refs_has_no_preamble_and_speaks_v2_on_request",
    "test_missing_or_wrong_token_is_unauthenticated",
    "test_post_upload_pack_sends_a_pack",
    "test_upload_pack_session_is_full_duplex",
]
