"""The ref checksum: order- and packing-independent, sensitive to any ref change."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pygit2

from node.checksum import ZERO_CHECKSUM, checksum_of, repository_checksum

OID_A = "a" * 40
OID_B = "b" * 40


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout


def make_repo(tmp_path: Path, name: str) -> Path:
    """A bare repository with two branches and a tag; refs and objects loose (pushed)."""
    work = tmp_path / f"{name}-work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    for i in range(3):
        (work / "f.txt").write_text(f"line {i}\n")
        git("add", "f.txt", cwd=work)
        git("commit", "-q", "-m", f"commit {i}", "--date", f"@{1_700_000_000 + i} +0000", cwd=work)
    git("branch", "feature", "HEAD~1", cwd=work)
    git("tag", "-a", "v1", "-m", "v1", cwd=work)
    bare = tmp_path / f"{name}.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    git("push", "-q", str(bare), "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*", cwd=work)
    return bare


def test_empty_is_all_zeros() -> None:
    assert checksum_of([]) == ZERO_CHECKSUM


def test_single_ref_is_its_sha1() -> None:
    expected = hashlib.sha1(f"{OID_A} refs/heads/main".encode()).hexdigest()
    assert checksum_of([(OID_A, "refs/heads/main")]) == expected


def test_order_does_not_matter_and_any_change_shows() -> None:
    refs = [(OID_A, "refs/heads/main"), (OID_B, "refs/tags/v1")]
    base = checksum_of(refs)
    assert checksum_of(reversed(refs)) == base
    assert checksum_of([(OID_B, "refs/heads/main"), (OID_B, "refs/tags/v1")]) != base
    assert checksum_of([(OID_A, "refs/heads/other"), (OID_B, "refs/tags/v1")]) != base
    assert checksum_of(refs[:1]) != base


def test_fresh_repository_without_refs_is_all_zeros(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "empty.git"), bare=True, initial_head="main")
    assert repository_checksum(repo) == ZERO_CHECKSUM


def test_packing_does_not_matter_but_a_ref_does(tmp_path: Path) -> None:
    loose = make_repo(tmp_path, "loose")
    packed = tmp_path / "packed.git"
    git("clone", "-q", "--bare", "--no-local", str(loose), str(packed), cwd=tmp_path)
    git("repack", "-adq", cwd=packed)
    git("pack-refs", "--all", cwd=packed)
    assert not list((loose / "objects" / "pack").glob("*.pack"))
    assert (loose / "refs/heads/main").exists()
    assert (packed / "packed-refs").exists() and not (packed / "refs/heads/main").exists()

    loose_sum = repository_checksum(pygit2.Repository(str(loose)))
    assert loose_sum == repository_checksum(pygit2.Repository(str(packed)))
    assert loose_sum != ZERO_CHECKSUM

    git("update-ref", "refs/heads/feature", "main", cwd=packed)
    assert repository_checksum(pygit2.Repository(str(packed))) != loose_sum


def test_matches_for_each_ref_and_ignores_head(tmp_path: Path) -> None:
    bare = make_repo(tmp_path, "repo")
    listing = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=bare)
    pairs = [tuple(line.split(" ", 1)) for line in listing.splitlines()]
    assert len(pairs) == 3
    repo = pygit2.Repository(str(bare))
    expected = checksum_of((oid, name) for oid, name in pairs)
    assert repository_checksum(repo) == expected
    git("symbolic-ref", "HEAD", "refs/heads/feature", cwd=bare)
    assert repository_checksum(pygit2.Repository(str(bare))) == expected
