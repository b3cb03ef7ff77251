"""The checksum of a repository's refs (Gitaly's scheme).

    checksum = XOR over every ref of sha1(f"{oid} {refname}"), as 40 hex digits

All zeros for a repository without refs. Two repositories have equal checksums exactly
when their refs (names and the objects they point at) are equal, whatever the order of
listing and whether refs or objects are loose or packed (barring sha1 collisions).

Decisions others rely on:

- HEAD is **excluded**, as in Gitaly: a fresh repository whose HEAD names an unborn
  branch has no refs and the all-zero checksum. Replication must still mirror HEAD
  (its symbolic target, the default branch) and verification that wants to catch a
  diverging default branch compares `FindDefaultBranch` / `RepositoryInfo.default_branch`
  besides the checksum.
- Any other symbolic ref counts with the oid it resolves to (what `git for-each-ref`
  prints); a dangling symbolic ref is skipped. So the checksum computed here equals the
  one computed from `git for-each-ref --format='%(objectname) %(refname)'`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pygit2

ZERO_CHECKSUM = "0" * 40


def checksum_of(refs: Iterable[tuple[str, str]]) -> str:
    """The checksum of `(oid_hex, refname)` pairs; order does not matter."""
    acc = 0
    for oid, name in refs:
        digest = hashlib.sha1(f"{oid} {name}".encode(), usedforsecurity=False).digest()
        acc ^= int.from_bytes(digest, "big")
    return f"{acc:040x}"


def iter_refs(repo: pygit2.Repository) -> Iterable[tuple[str, str]]:
    """`(oid_hex, refname)` for every ref but HEAD, symbolic refs resolved.

    Blocking (reads the ref store): call it from a worker thread in async code.
    """
    for name in repo.listall_references():
        if name == "HEAD":
            continue
        try:
            ref = repo.lookup_reference(name).resolve()
        except (KeyError, pygit2.GitError):
            continue  # deleted meanwhile, or a dangling symbolic ref
        yield str(ref.target), name


def repository_checksum(repo: pygit2.Repository) -> str:
    """The checksum of `repo`'s refs (blocking; see iter_refs)."""
    return checksum_of(iter_refs(repo))
