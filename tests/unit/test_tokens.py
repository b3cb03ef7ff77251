"""Several accepted tokens (rotation): config merging and the checks that use them."""

from __future__ import annotations

import base64

import pytest

from cluster.config import ProxyConfig
from cluster.gateway import http as gh
from common.auth import bearer_metadata, token_list, token_matches
from common.config import ConfigError, merge_tokens
from node.config import NodeConfig


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"x:{password}".encode()).decode()


def test_merge_keeps_the_single_token_first_and_drops_empties_and_repeats() -> None:
    assert merge_tokens("old", ["new", "", "old", "new"]) == ["old", "new"]
    assert merge_tokens("", ["new", "old"]) == ["new", "old"]
    assert merge_tokens("", []) == []


def test_configs_accept_token_lists_and_send_the_first() -> None:
    proxy = ProxyConfig(token="", tokens=["new", "old"], node_token="n")
    assert (proxy.token, proxy.tokens) == ("new", ["new", "old"])
    node = NodeConfig(token="old", tokens=["new"])
    assert (node.token, node.tokens) == ("old", ["old", "new"])
    with pytest.raises(ConfigError, match="'token' \\(or 'tokens'\\) is required"):
        NodeConfig(token="", tokens=[""])
    with pytest.raises(ConfigError, match="'token' \\(or 'tokens'\\) is required"):
        ProxyConfig(token="", tokens=[], node_token="n")


def test_grpc_and_http_checks_accept_any_listed_token_and_nothing_else() -> None:
    accepted = ["old", "new"]
    for token in accepted:
        assert token_matches(bearer_metadata(token), accepted)
        assert gh.basic_auth_ok(basic(token), accepted)
    for wrong in ("", "ol", "oldnew", "other"):
        assert not token_matches(bearer_metadata(wrong), accepted)
        assert not gh.basic_auth_ok(basic(wrong), accepted)
    assert token_list("") == () and token_list(["", "a"]) == ("a",)
