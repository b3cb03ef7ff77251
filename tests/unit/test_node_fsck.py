"""node.fsck: the policy is consistent and every message id is one git knows."""

from __future__ import annotations

import subprocess
from pathlib import Path

from node import fsck


def test_the_lists_are_disjoint_and_cover_the_issue() -> None:
    assert not set(fsck.LEGACY_IGNORED) & set(fsck.ENFORCED)
    for legacy in ("zeroPaddedFilemode", "badTimezone", "missingSpaceBeforeDate", "badDateOverflow"):
        assert fsck.POLICY[legacy] is fsck.Severity.IGNORE
    for dangerous in ("hasDotgit", "gitmodulesUrl", "gitmodulesPath", "gitmodulesSymlink", "nullSha1"):
        assert fsck.POLICY[dangerous] is fsck.Severity.ERROR


def test_push_and_replication_get_the_same_policy() -> None:
    receive = [
        o.removeprefix("receive.fsck.") for o in fsck.receive_config() if o.startswith("receive.fsck.")
    ]
    fetch = [o.removeprefix("fetch.fsck.") for o in fsck.fetch_config() if o.startswith("fetch.fsck.")]
    assert receive == fetch == [f"{k}={v}" for k, v in fsck.POLICY.items()]
    assert "receive.fsckObjects=true" in fsck.receive_config()
    assert "fetch.fsckObjects=true" in fsck.fetch_config()


def test_git_knows_every_message_id(tmp_path: Path) -> None:
    """git dies with "Unhandled message id" on an id it does not know."""
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path)], check=True)
    ids = [option.removeprefix("receive.") for option in fsck.receive_config()[1:]]
    args = [arg for option in ids for arg in ("-c", option)]
    done = subprocess.run(["git", *args, "fsck"], check=False, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_rejection_names_the_first_finding() -> None:
    stderr = (
        b"remote: counting\n"
        b"error: object 11faf5ee4dbc9821dd1c1c59e7962f04881d1860: hasDotgit: contains '.git'\n"
        b"fatal: fsck error in packed object\n"
    )
    assert (
        fsck.rejection(stderr)
        == "object 11faf5ee4dbc9821dd1c1c59e7962f04881d1860: hasDotgit: contains '.git'"
    )
    assert fsck.rejection(b"fatal: index-pack failed\n") is None
