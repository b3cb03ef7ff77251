"""The object-checking policy of a storage node: what a push or a replication accepts.

Every object that enters a node is checked by git's own fsck (`receive.fsckObjects` for
pushes, `fetch.fsckObjects` for replication fetches, `git fsck --strict` for the object
files a replication copies (node.replica_copy); all in strict mode, where git's
warnings are errors). This module decides, per fsck message id, which findings reject
the objects. The same policy applies to every way in (`receive_config`, `fetch_config`,
`fsck_config`), so a history a push accepts always replicates, and nothing reaches a
replica that a push would have refused.

Two lists, by the harm an object can do (the approach Git hosts take; Gitaly ignores a
similar handful of legacy ids):

- LEGACY_IGNORED: malformed *metadata* that older git versions and import tools wrote,
  that real public histories contain (and that GitHub and GitLab accept), and that git
  parses consistently: odd author/committer lines (bad or overflowing dates, time
  zones, zero-padded dates, missing spaces, a missing name or a malformed email,
  several author lines), zero-padded or unusual file modes in trees, NUL bytes in a
  commit message, tags without a tagger. They change how a log reads, never which files
  a checkout writes, so they are ignored.
- ENFORCED: what can hurt whoever clones or serves the repository, set to `error`
  explicitly so that no git default (or a later, looser one) lets it in: tree entries
  that a checkout would interpret as a path (`.git` in any spelling a filesystem folds
  to it, `.`, `..`, an empty name or one containing `/`); `.gitmodules` that inject
  options or escape the work tree (bad submodule names, paths or URLs, `update`
  commands, a symlinked or oversized `.gitmodules`); `.gitattributes` that git refuses
  to parse; object ids that are malformed or all zeros; trees git cannot walk
  (duplicate or unsorted entries).

Every other id keeps git's default severity (strict mode: warnings reject); e.g. an
author line with no email at all (missingEmail) or an empty name (badName) is refused:
no tool is known to write those, and they are where parsers of identities disagree.

What a rejected push looks like to the client (git's own report, relayed unchanged):

    remote: error: object 5e1f...: hasDotgit: contains '.git'
    remote: fatal: fsck error in packed object
     ! [remote rejected] main -> main (unpacker error)

`rejection(stderr)` finds that first finding in git's stderr, for a replication's error.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Severity(StrEnum):
    """A value of git's `fsck.<msg-id>` settings."""

    IGNORE = "ignore"
    ERROR = "error"


LEGACY_IGNORED: tuple[str, ...] = (
    # author/committer/tagger lines written by old tools
    "badDate",
    "badDateOverflow",
    "badEmail",
    "badTimezone",
    "missingNameBeforeEmail",
    "missingSpaceBeforeDate",
    "missingSpaceBeforeEmail",
    "multipleAuthors",
    "zeroPaddedDate",
    # tree entry modes ("040000" for "40000", group-writable "100664")
    "zeroPaddedFilemode",
    "badFilemode",
    # commit messages with a NUL byte, tags without a tagger or with a non-ref name
    "nulInCommit",
    "missingTaggerEntry",
    "badTagName",
    "extraHeaderEntry",
)

ENFORCED: tuple[str, ...] = (
    # tree entries that a checkout would take for a path
    "hasDot",
    "hasDotdot",
    "hasDotgit",
    "emptyName",
    "fullPathname",
    # .gitmodules: option and path injection
    "gitmodulesBlob",
    "gitmodulesLarge",
    "gitmodulesMissing",
    "gitmodulesName",
    "gitmodulesPath",
    "gitmodulesSymlink",
    "gitmodulesUpdate",
    "gitmodulesUrl",
    # .gitattributes git refuses to parse
    "gitattributesBlob",
    "gitattributesLarge",
    "gitattributesLineLength",
    "gitattributesMissing",
    # malformed or null object ids
    "badObjectSha1",
    "badParentSha1",
    "badTreeSha1",
    "nullSha1",
    # trees git cannot walk reliably
    "duplicateEntries",
    "treeNotSorted",
    "badTree",
)

POLICY: dict[str, Severity] = {
    **{msg_id: Severity.IGNORE for msg_id in LEGACY_IGNORED},
    **{msg_id: Severity.ERROR for msg_id in ENFORCED},
}


def _settings(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.{msg_id}={severity}" for msg_id, severity in POLICY.items())


def receive_config() -> tuple[str, ...]:
    """`key=value` settings for `git receive-pack`: check every pushed object, by POLICY."""
    return ("receive.fsckObjects=true", *_settings("receive.fsck"))


def fetch_config() -> tuple[str, ...]:
    """`key=value` settings for a replication `git fetch`: the same checks as a push."""
    return ("fetch.fsckObjects=true", *_settings("fetch.fsck"))


def fsck_config() -> tuple[str, ...]:
    """`key=value` settings for `git fsck --strict` of objects a replication copied
    (node.replica_copy): the same checks as a push."""
    return _settings("fsck")


_FINDING = re.compile(rb"error: (object [0-9a-f]{40,64}: [A-Za-z]+: [^\n]*)")


def rejection(stderr: bytes) -> str | None:
    """The first fsck finding git reported ("object 5e1f...: hasDotgit: contains '.git'"), or None."""
    match = _FINDING.search(stderr)
    return match.group(1).decode(errors="replace").strip() if match else None
