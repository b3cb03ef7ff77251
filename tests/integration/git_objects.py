"""Hand-made git objects for fsck tests: the quirks of old histories, and hostile trees.

Objects are written with `git hash-object --literally` into a local
repository (`work`), which does no checking, so a test can then push them with the
stock git client and see what the server does.

- `legacy_history(work)`: a chain of commits on `main`, each carrying one legacy quirk
  (its fsck message id -> commit id), plus an annotated tag without a tagger.
- `dangerous_commits(work)`: one root commit per dangerous fsck message id.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cluster.testing import GIT_ENV, run_git

IDENT = "A U Thor <author@example.com> 1234567890 +0000"

# fsck message id -> (author line, committer line) with that quirk
LEGACY_IDENTS = {
    "badTimezone": ("A U Thor <author@example.com> 1234567890 +05", IDENT),
    "missingSpaceBeforeDate": ("A U Thor <author@example.com>1234567890 +0000", IDENT),
    "missingSpaceBeforeEmail": ("A U Thor<author@example.com> 1234567890 +0000", IDENT),
    "badDateOverflow": ("A U Thor <author@example.com> 99999999999999999999 +0000", IDENT),
    "zeroPaddedDate": ("A U Thor <author@example.com> 01234567890 +0000", IDENT),
    "missingNameBeforeEmail": ("<author@example.com> 1234567890 +0000", IDENT),
    "badEmail": ("A U Thor <author<@example.com> 1234567890 +0000", IDENT),
    "badDate": ("A U Thor <author@example.com> yesterday +0000", IDENT),
}


def write_object(work: Path, kind: str, data: bytes) -> str:
    """Write `data` as a loose object of type `kind` with no checks; return its id."""
    done = run_git_bytes(work, ["hash-object", "--literally", "-t", kind, "-w", "--stdin"], data)
    return done.decode().strip()


def run_git_bytes(work: Path, args: list[str], data: bytes) -> bytes:
    """git with `data` on stdin; its stdout (raises CalledProcessError on failure)."""
    done = subprocess.run(
        ["git", *args], cwd=work, input=data, capture_output=True, check=True, env={**os.environ, **GIT_ENV}
    )
    return done.stdout


def tree_entry(mode: str, name: str, oid: str) -> bytes:
    """One raw tree entry (mode written exactly as given, e.g. zero-padded)."""
    return f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid)


def blob(work: Path, content: bytes) -> str:
    """Write a blob; return its id."""
    return write_object(work, "blob", content)


def commit(
    work: Path,
    tree: str,
    message: str,
    parent: str | None = None,
    *,
    author: str = IDENT,
    committer: str = IDENT,
) -> str:
    """A commit object written by hand (headers exactly as given)."""
    text = f"tree {tree}\n" + (f"parent {parent}\n" if parent else "")
    text += f"author {author}\ncommitter {committer}\n"
    return write_object(work, "commit", text.encode() + f"\n{message}\n".encode())


def legacy_history(work: Path) -> dict[str, str]:
    """Commits on `main` in `work`, one per legacy quirk: {fsck message id: commit id}.

    Also tags `v-legacy` (annotated, no tagger line) on the last commit.
    """
    readme = blob(work, b"legacy\n")
    sub = mktree_raw(work, [tree_entry("100644", "f.txt", blob(work, b"nested\n"))])
    padded = mktree_raw(
        work, [tree_entry("100644", "README", readme), tree_entry("040000", "dir", sub)]
    )  # "040000": zeroPaddedFilemode
    group_writable = mktree_raw(
        work, [tree_entry("100664", "README", readme), tree_entry("40000", "dir", sub)]
    )  # "100664": badFilemode
    quirks: dict[str, str] = {}
    parent = commit(work, padded, "zero-padded file mode")
    quirks["zeroPaddedFilemode"] = parent
    parent = commit(work, group_writable, "group-writable file mode", parent)
    quirks["badFilemode"] = parent
    for msg_id, (author, committer) in LEGACY_IDENTS.items():
        parent = commit(work, padded, msg_id, parent, author=author, committer=committer)
        quirks[msg_id] = parent
    parent = commit(work, padded, "two authors", parent, author=f"{IDENT}\nauthor {IDENT}")
    quirks["multipleAuthors"] = parent
    parent = write_object(
        work,
        "commit",
        f"tree {padded}\nparent {parent}\nauthor {IDENT}\ncommitter {IDENT}\n\nnul\0byte\n".encode(),
    )
    quirks["nulInCommit"] = parent
    tag = write_object(work, "tag", f"object {parent}\ntype commit\ntag v-legacy\n\nno tagger\n".encode())
    quirks["missingTaggerEntry"] = tag
    run_git("update-ref", "refs/heads/main", parent, cwd=work)
    run_git("update-ref", "refs/tags/v-legacy", tag, cwd=work)
    return quirks


def mktree_raw(work: Path, entries: list[bytes]) -> str:
    """A tree from raw entries (in the order given: callers keep them sorted)."""
    return write_object(work, "tree", b"".join(entries))


def dangerous_commits(work: Path) -> dict[str, str]:
    """One root commit per dangerous fsck message id: {message id: commit id}."""
    sub = mktree_raw(work, [tree_entry("100644", "config", blob(work, b"[core]\n"))])

    def with_modules(text: str) -> str:
        return mktree_raw(work, [tree_entry("100644", ".gitmodules", blob(work, text.encode()))])

    trees = {
        "hasDotgit": mktree_raw(work, [tree_entry("40000", ".git", sub)]),
        "hasDotgit (case)": mktree_raw(work, [tree_entry("40000", ".GIT", sub)]),
        "hasDotdot": mktree_raw(work, [tree_entry("40000", "..", sub)]),
        "gitmodulesUrl": with_modules('[submodule "x"]\n\tpath = x\n\turl = -upload-pack=touch /tmp/pwn\n'),
        "gitmodulesPath": with_modules('[submodule "x"]\n\tpath = -x\n\turl = https://example.com/x\n'),
        "gitmodulesName": with_modules(
            '[submodule "../../hooks"]\n\tpath = x\n\turl = https://example.com/x\n'
        ),
        "gitmodulesSymlink": mktree_raw(
            work, [tree_entry("120000", ".gitmodules", blob(work, b"elsewhere/.gitmodules"))]
        ),
        "nullSha1": mktree_raw(work, [tree_entry("160000", "sub", "00" * 20)]),
    }
    return {msg_id: commit(work, tree, f"hostile: {msg_id}") for msg_id, tree in trees.items()}
