"""Validation of what SmartHTTPService callers may pass to git, and the ls-refs parsing
used by replication."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgumentError
from node.git_config import PINNED
from node.smarthttp_service import RECEIVE_PACK, UPLOAD_PACK, config_args, protocol_env


def test_config_options_become_c_arguments_with_the_node_options_then_the_pins_last() -> None:
    pins = [arg for option in PINNED for arg in ("-c", option)]
    args = config_args(["uploadpack.allowfilter=true"], UPLOAD_PACK)
    assert args == [
        "-c", "uploadpack.allowFilter=true",
        "-c", "uploadpack.allowAnySHA1InWant=true",
        "-c", "uploadpack.allowFilter=true",
        *pins,
    ]  # fmt: skip
    args = config_args(["receive.maxInputSize=10m", "TRANSFER.HIDEREFS=refs/keep-around"], RECEIVE_PACK)
    assert args[:4] == ["-c", "receive.maxInputSize=10m", "-c", "transfer.hideRefs=refs/keep-around"]
    assert args.index("receive.fsckObjects=true") > 4  # node.fsck's policy
    assert args[-6 - len(pins) :] == [
        "-c", "receive.denyNonFastForwards=false",
        "-c", "receive.denyDeletes=false",
        "-c", "receive.autogc=false",
        *pins,
    ]  # fmt: skip
    assert "core.bare=true" in PINNED and "receive.denyCurrentBranch=refuse" in PINNED


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
        "receive.fsckObjects=false",
        "receive.autogc=true",
        "transfer.hideRefs=refs/x\nbad",
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
