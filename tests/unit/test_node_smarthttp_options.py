"""Validation of what SmartHTTPService callers may pass to git, and the ls-refs parsing
used by replication."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgumentError
from node.replication import _ext_escape
from node.replication_source import _symref_target
from node.smarthttp_service import RECEIVE_PACK, UPLOAD_PACK, config_args, protocol_env


def test_config_options_become_c_arguments_with_the_node_options_last() -> None:
    args = config_args(["uploadpack.allowFilter=true"], UPLOAD_PACK)
    assert args[:2] == ["-c", "uploadpack.allowFilter=true"]
    assert args[2:] == ["-c", "uploadpack.allowAnySHA1InWant=true", "-c", "uploadpack.allowFilter=true"]
    args = config_args(["receive.fsckObjects=false", "receive.autogc=true"], RECEIVE_PACK)
    assert args[:4] == ["-c", "receive.fsckObjects=false", "-c", "receive.autogc=true"]
    assert args.index("receive.fsckObjects=true") > 4  # node.fsck's policy
    assert args[-6:] == [
        "-c", "receive.denyNonFastForwards=false",
        "-c", "receive.denyDeletes=false",
        "-c", "receive.autogc=false",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "option",
    [
        "novalue",
        "=x",
        "-c=x",
        "core.sshCommand=touch /tmp/x",
        "uploadpack.packObjectsHook=sh",
        "core.hooksPath=/tmp",
        "core.fsmonitor=sh",
        "core.gitProxy=x",
        "alias.x=!sh",
        "filter.x.clean=sh",
        "credential.helper=x",
        "pack.threads=1\nbad",
        "a b.c=1",
    ],
)
def test_config_options_refused(option: str) -> None:
    with pytest.raises(InvalidArgumentError):
        config_args([option], UPLOAD_PACK)


def test_git_protocol_env() -> None:
    assert protocol_env("") == {}
    assert protocol_env("version=2") == {"GIT_PROTOCOL": "version=2"}
    for bad in ("version=2\n", "a b", "x" * 300):
        with pytest.raises(InvalidArgumentError):
            protocol_env(bad)


def test_symref_target_from_ls_refs() -> None:
    oid = "1" * 40
    assert _symref_target([f"{oid} HEAD symref-target:refs/heads/dev"]) == "refs/heads/dev"
    assert _symref_target(["unborn HEAD symref-target:refs/heads/trunk"]) == "refs/heads/trunk"
    assert _symref_target([f"{oid} HEAD"]) is None
    assert _symref_target([]) is None


def test_ext_escape() -> None:
    assert _ext_escape("/a b/100%") == "/a% b/100%%"
