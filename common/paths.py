"""Validation of client-supplied repository paths.

A repository is named by a relative path under a storage root. Anything that could
leave the root, or that a shell, a log line or git would misread, or that the file
system could not hold (a name past NAME_MAX, a path past PATH_MAX once under the root),
is refused with InvalidArgumentError *before* anything touches the disk. Messages quote
the path cut short (common.errors.quoted) and never show the storage root.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from common.errors import InvalidArgumentError, quoted

log = logging.getLogger(__name__)

# In UTF-8 bytes. A segment leaves room below NAME_MAX (255) for the hidden temporary
# sibling a create, remove or replication names after it (node.storage.temp_sibling); the
# whole path leaves room below PATH_MAX (4096) for the storage root.
MAX_PATH_BYTES = 1024
MAX_SEGMENT_BYTES = 200
# Marks a node's hidden temporary directories (a create, remove or replication in
# progress; node.storage.temp_sibling): listings skip them and a starting node deletes
# them as crash leftovers. A client's path holding it is refused: such a repository was
# created, acknowledged, and then deleted by the node's next start.
TEMP_MARKER = ".gitraft-tmp-"


def validate_relative_path(path: str) -> str:
    """Return `path` normalised (no `.` segments, no doubled slashes) or raise.

    Refused: empty, absolute, `..` segments, control characters (incl. NUL, DEL),
    backslashes, a leading `-` in any segment (would read as a git option), TEMP_MARKER
    in any segment (the node's own temporaries), paths over
    MAX_PATH_BYTES and segments over MAX_SEGMENT_BYTES (UTF-8), and text that is not
    valid UTF-8 (lone surrogates).
    """
    if not path:
        raise InvalidArgumentError("empty repository path")
    try:
        size = len(path.encode())
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"repository path is not valid UTF-8: {quoted(path)}") from None
    if size > MAX_PATH_BYTES:
        raise InvalidArgumentError(f"repository path too long: {size} bytes (at most {MAX_PATH_BYTES})")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise InvalidArgumentError(f"repository path has control characters: {quoted(path)}")
    if "\\" in path:
        raise InvalidArgumentError(f"repository path has a backslash: {quoted(path)}")
    if path.startswith("/") or os.path.isabs(path):
        raise InvalidArgumentError("repository path is absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidArgumentError(f"repository path is empty after normalising: {quoted(path)}")
    if ".." in parts:
        raise InvalidArgumentError(f"repository path leaves the storage: {quoted(path)}")
    if any(p.startswith("-") for p in parts):
        raise InvalidArgumentError(f"repository path segment starts with '-': {quoted(path)}")
    if any(TEMP_MARKER in p for p in parts):
        raise InvalidArgumentError(f"repository path holds the reserved {TEMP_MARKER!r}: {quoted(path)}")
    if any(len(p.encode()) > MAX_SEGMENT_BYTES for p in parts):
        raise InvalidArgumentError(
            f"repository path has a segment over {MAX_SEGMENT_BYTES} bytes: {quoted(path)}"
        )
    return "/".join(parts)


def resolve_under(root: Path, relative_path: str) -> Path:
    """The absolute path of `relative_path` under `root`, after validation.

    Also refuses a path that resolves outside `root` through a symbolic link, or that
    the file system refuses to resolve (InvalidArgumentError, the OS error only logged).
    """
    clean = validate_relative_path(relative_path)
    root_resolved = root.resolve()
    try:
        full = (root_resolved / clean).resolve()
    except OSError as exc:
        log.warning("cannot resolve repository path", extra={"relative_path": clean, "error": str(exc)})
        raise InvalidArgumentError(f"repository path cannot be used: {quoted(clean)}") from None
    if full != root_resolved and root_resolved not in full.parents:
        raise InvalidArgumentError(f"repository path resolves outside the storage: {quoted(relative_path)}")
    if full == root_resolved:
        raise InvalidArgumentError(f"repository path is the storage root: {quoted(relative_path)}")
    return full
