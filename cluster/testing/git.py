"""The real git for tests and benchmarks: no user or system config, no prompts, fixed
identities."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# git with no user/system config, no prompts, fixed identities.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "gitraft tests",
    "GIT_AUTHOR_EMAIL": "tests@gitraft.invalid",
    "GIT_COMMITTER_NAME": "gitraft tests",
    "GIT_COMMITTER_EMAIL": "tests@gitraft.invalid",
}


def run_git(
    *args: str,
    cwd: Path,
    check: bool = True,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real git (GIT_ENV applied). With `check`, raise RuntimeError with git's
    stderr on a non-zero exit; TimeoutExpired after `timeout` seconds (git is killed)."""
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    done = subprocess.run(
        ["git", *args], check=False, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def init_work_tree(path: Path, branch: str = "main") -> Path:
    """An empty non-bare repository at `path` on `branch`."""
    path.mkdir(parents=True, exist_ok=True)
    run_git("init", "-q", "-b", branch, cwd=path)
    return path


def commit_file(work: Path, name: str, content: str | bytes, message: str = "") -> str:
    """Write `name` in the work tree, commit it, return the new commit id."""
    target = work / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    run_git("add", name, cwd=work)
    run_git("commit", "-q", "-m", message or f"change {name}", cwd=work)
    return run_git("rev-parse", "HEAD", cwd=work).stdout.strip()


def remote_refs(url: str, cwd: Path, timeout: float = 60.0) -> dict[str, str]:
    """`git ls-remote url` as {ref: oid} (HEAD included when the remote shows it)."""
    out = run_git("ls-remote", url, cwd=cwd, timeout=timeout).stdout
    refs: dict[str, str] = {}
    for line in out.splitlines():
        oid, _, ref = line.partition("\t")
        refs[ref] = oid
    return refs
