"""Validation of client-supplied repository paths.

A repository is named by a relative path under a storage root. Anything that could
leave the root, or that a shell, a log line or git would misread, is refused with
InvalidArgumentError *before* anything touches the disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import InvalidArgumentError

MAX_PATH_LENGTH = 4096


def validate_relative_path(path: str) -> str:
    """Return `path` normalised (no `.` segments, no doubled slashes) or raise.

    Refused: empty, absolute, `..` segments, control characters (incl. NUL, DEL),
    backslashes, a leading `-` in any segment (would read as a git option), and
    paths longer than MAX_PATH_LENGTH.
    """
    if not path:
        raise InvalidArgumentError("empty repository path")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidArgumentError(f"repository path too long: {len(path)} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise InvalidArgumentError(f"repository path has control characters: {path!r}")
    if "\\" in path:
        raise InvalidArgumentError(f"repository path has a backslash: {path!r}")
    if path.startswith("/") or os.path.isabs(path):
        raise InvalidArgumentError(f"repository path is absolute: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidArgumentError(f"repository path is empty after normalising: {path!r}")
    if ".." in parts:
        raise InvalidArgumentError(f"repository path leaves the storage: {path!r}")
    if any(p.startswith("-") for p in parts):
        raise InvalidArgumentError(f"repository path segment starts with '-': {path!r}")
    return "/".join(parts)


def resolve_under(root: Path, relative_path: str) -> Path:
    """The absolute path of `relative_path` under `root`, after validation.

    Also refuses a path that resolves outside `root` through a symbolic link.
    """
    clean = validate_relative_path(relative_path)
    root_resolved = root.resolve()
    full = (root_resolved / clean).resolve()
    if full != root_resolved and root_resolved not in full.parents:
        raise InvalidArgumentError(f"repository path resolves outside the storage: {relative_path!r}")
    if full == root_resolved:
        raise InvalidArgumentError(f"repository path is the storage root: {relative_path!r}")
    return full
