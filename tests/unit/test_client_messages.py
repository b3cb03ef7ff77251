"""common.errors.quoted / client_message: what a client may read in a status message."""

from __future__ import annotations

import pytest

from common.errors import MAX_MESSAGE, client_message, quoted


def test_quoted_cuts_long_values_and_says_how_long() -> None:
    assert quoted("a.git") == "'a.git'"
    long = quoted("é" * 3000)
    assert long.endswith("... (3000 characters)") and len(long) < 130


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "target path is not a repository: '/srv/node/storage/a.git'",
            "target path is not a repository: '<path>'",
        ),
        (
            "git fetch failed: fatal: could not read ext::/usr/bin/python3 -I /x/node/tunnel.py",
            "git fetch failed: fatal: could not read ext::<path> -I <path>",
        ),
        ("repository not found: 'group/project.git'", "repository not found: 'group/project.git'"),
        ("ref refs/heads/a/b moved", "ref refs/heads/a/b moved"),
    ],
)
def test_client_message_hides_absolute_paths_only(message: str, expected: str) -> None:
    assert client_message(message) == expected


def test_client_message_is_bounded_for_grpc_metadata() -> None:
    """gRPC refuses a status message over 16 KiB (percent-encoded: up to 3 bytes per
    UTF-8 byte): MAX_MESSAGE characters of 4-byte characters stay below it."""
    text = client_message("\U0001f600" * 20_000)
    assert len(text) <= MAX_MESSAGE
    assert len(text.encode()) * 3 < 16 * 1024
