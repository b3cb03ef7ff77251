"""node.git_config: the exact keys a client may set, their values, the caps and the pins."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgumentError
from node.git_config import ALLOWED, MAX_OPTIONS, PINNED, command_line, validated, validated_option


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("transfer.hideRefs=refs/keep-around", "transfer.hideRefs=refs/keep-around"),
        ("uploadpack.hiderefs=!^refs/heads/x", "uploadpack.hideRefs=!^refs/heads/x"),
        ("receive.hideRefs=refs", "receive.hideRefs=refs"),
        ("receive.maxInputSize=104857600", "receive.maxInputSize=104857600"),
        ("receive.maxInputSize=100M", "receive.maxInputSize=100M"),
        ("uploadpack.allowFilter=TRUE", "uploadpack.allowFilter=TRUE"),
        ("uploadpack.allowRefInWant=0", "uploadpack.allowRefInWant=0"),
        ("uploadpack.keepAlive=5", "uploadpack.keepAlive=5"),
        ("receive.advertisePushOptions=yes", "receive.advertisePushOptions=yes"),
    ],
)
def test_allowed_keys_with_valid_values_pass_in_git_spelling(option: str, expected: str) -> None:
    assert validated_option(option) == expected


@pytest.mark.parametrize(
    "option",
    [
        "core.bare=false",
        "receive.denyCurrentBranch=updateInstead",
        "core.worktree=/srv",
        "core.sharedRepository=world",
        "receive.fsck.skipList=/etc/hostname",
        "fsck.skipList=/etc/hostname",
        "uploadpack.packObjectsHook=sh",
        "core.hooksPath=/tmp",
        "core.alternateRefsCommand=sh",
        "include.path=/etc/hostname",
        "transfer.hideRefs.x=refs",  # a subsection never passes
        "uploadpack.allowFilter=sometimes",
        "uploadpack.keepAlive=3601",
        "uploadpack.keepAlive=٣",  # a non-ASCII digit
        "receive.maxInputSize=1T",
        "transfer.hideRefs=heads/x",
        "transfer.hideRefs=refs/../x y",
        "transfer.hideRefs=refs/" + "a" * 300,
        "x" * 65 + ".y=1",
    ],
)
def test_everything_else_is_refused(option: str) -> None:
    with pytest.raises(InvalidArgumentError):
        validated_option(option)


def test_the_message_names_the_key_cut_short() -> None:
    with pytest.raises(InvalidArgumentError, match=r"core\.bare"):
        validated_option("core.bare=false")
    with pytest.raises(InvalidArgumentError) as info:
        validated_option("k" * 5000 + ".x=1")
    assert "5002 characters" in str(info.value) and len(str(info.value)) < 400


def test_the_count_is_capped_before_any_option_is_looked_at() -> None:
    assert len(validated(["uploadpack.allowFilter=true"] * MAX_OPTIONS)) == MAX_OPTIONS
    with pytest.raises(InvalidArgumentError, match="too many git config options: 100000"):
        validated(["bad"] * 100_000)


def test_pins_come_after_the_callers_and_the_nodes_options() -> None:
    args = command_line(["uploadpack.allowFilter=false"], ["uploadpack.allowFilter=true"])
    options = args[1::2]
    assert args[::2] == ["-c"] * len(options)
    assert options == ["uploadpack.allowFilter=false", "uploadpack.allowFilter=true", *PINNED]
    pinned_keys = {option.partition("=")[0].lower() for option in PINNED}
    assert not pinned_keys & set(ALLOWED)
