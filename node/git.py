"""Running the real git binary from asyncio, safely.

The one place a storage node starts git. Contract:

- Arguments are a list, never a shell string; nothing is interpolated by a shell.
- The environment is scrubbed (`git_env`): only PATH, locale-free C messages and a few
  harmless variables pass through; no system or user config is read
  (GIT_CONFIG_NOSYSTEM=1, GIT_CONFIG_GLOBAL=/dev/null), git never prompts
  (GIT_TERMINAL_PROMPT=0), and no inherited GIT_* variable (GIT_DIR, GIT_INDEX_FILE...)
  leaks in. Callers add what a command needs through `env=` (e.g. GIT_PROTOCOL).
- A cancelled call (client gone, deadline) kills the child and reaps it; no orphan git.

API:
    result = await run_git(["rev-parse", "HEAD"], git_dir=path)   # GitResult
    result = await run_git([...], git_dir=path, stdin=b"...", check=False)
    proc = await start_git(["upload-pack", "--stateless-rpc", "."], cwd=path)  # streaming
    env = git_env({"GIT_PROTOCOL": "version=2"})

`run_git` raises GitCommandError (a GitraftError, INTERNAL unless the caller translates
it) when git exits non-zero and `check` is true; its `stderr` and `exit_code` let callers
map known failures to better codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.errors import GitraftError
from common.metrics import GIT_DURATION, git_command_label

GIT_BINARY = "git"

# Inherited variables that are safe and sometimes needed (finding git, temp files).
_PASSTHROUGH = ("PATH", "TMPDIR", "TZ", "LD_LIBRARY_PATH")

_BASE_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "/bin/false",
    "GIT_ATTR_NOSYSTEM": "1",
    "LANG": "C",
    "LC_ALL": "C",
}


class GitCommandError(GitraftError):
    """git exited non-zero. Maps to INTERNAL unless a caller translates it."""

    def __init__(self, args: Sequence[str], exit_code: int, stderr: bytes) -> None:
        self.git_args = list(args)
        self.exit_code = exit_code
        self.stderr = stderr
        last = stderr.decode(errors="replace").strip().splitlines()
        self.detail = last[-1] if last else "no error output"
        self.git_command = _command_of(self.git_args)
        super().__init__(f"git {self.git_command} failed with exit code {exit_code}: {self.detail}")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode(errors="replace")


def _command_of(args: Sequence[str]) -> str:
    """The git subcommand in `args`, past global options such as `-c key=value`."""
    skip = False
    for arg in args:
        if skip or arg.startswith("-"):
            skip = arg in ("-c", "-C")
            continue
        return arg
    return ""


@dataclass(frozen=True)
class GitResult:
    """What a finished git command produced."""

    stdout: bytes
    stderr: bytes
    exit_code: int

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8 (errors replaced), trailing newline removed."""
        return self.stdout.decode(errors="replace").rstrip("\n")


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The scrubbed environment every git child gets, plus `extra`."""
    env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(_BASE_ENV)
    if extra:
        env.update(extra)
    return env


@functools.lru_cache(maxsize=16)
def _executable(git_binary: str, search_path: str) -> str:
    """`git_binary` found once on `search_path` (as exec would find it), so that each
    start does not try every PATH entry before git's (one failed exec per entry); the
    name itself when it is not found (exec then fails as it would have)."""
    return shutil.which(git_binary, path=search_path) or git_binary


def watch_children_by_pidfd() -> bool:
    """Have asyncio learn of git's exits through pidfds (Linux 5.3+) instead of a thread
    per child: Python before 3.12 starts a ThreadedChildWatcher thread for every git,
    ~0.2 ms of the node's CPU each (300 starts of `git --version`: 0.38-0.51 against
    0.57-0.73 ms a start). Call it on the node's event loop before it starts git; False
    (nothing changed) where pidfds are missing or Python already does this."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
    return True


@functools.lru_cache(maxsize=4)
def _dies_with_node(search_path: str) -> tuple[str, ...]:
    """What starts a git that the kernel kills when the node dies: `setpriv
    --pdeathsig KILL --` (util-linux; an exec of ~1 ms), or nothing where it is missing.

    Without it, git outlived a node killed with SIGKILL: a receive-pack past reading its
    pack went on moving objects and renaming ref locks while the restarted node's start
    removed what it took for leftovers (node.janitor), and a gc's pack-objects wrote on
    for minutes. (A `preexec_fn` calling prctl would cost ~5 ms a start: Python then
    forks instead of using vfork.) The signal fires when the forking thread exits: the
    node starts git from its event loop, on its main thread."""
    setpriv = shutil.which("setpriv", path=search_path)
    return (setpriv, "--pdeathsig", "KILL", "--") if setpriv else ()


def _argv(
    args: Sequence[str], git_dir: Path | None, git_binary: str, dies_with_node: bool = True
) -> list[str]:
    if isinstance(args, str):
        raise TypeError("git arguments must be a list, not a string")
    search_path = git_env()["PATH"]
    wrapper = _dies_with_node(search_path) if dies_with_node else ()
    prefix = [*wrapper, _executable(git_binary, search_path)]
    if git_dir is not None:
        prefix.append(f"--git-dir={git_dir}")
    return [*prefix, *args]


async def start_git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | None = asyncio.subprocess.PIPE,
    stdout: int | None = asyncio.subprocess.PIPE,
    stderr: int | None = asyncio.subprocess.PIPE,
    git_binary: str = GIT_BINARY,
    dies_with_node: bool = True,
) -> asyncio.subprocess.Process:
    """Start git for streaming I/O; the caller owns the process (wait/kill it, close stdin).
    `dies_with_node` False: no `setpriv` wrapper (see _dies_with_node), for a short
    read-only git whose outliving the node for milliseconds harms nothing."""
    return await asyncio.create_subprocess_exec(
        *_argv(args, git_dir, git_binary, dies_with_node),
        cwd=str(cwd) if cwd is not None else None,
        env=git_env(env),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )


async def run_git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    git_binary: str = GIT_BINARY,
    dies_with_node: bool = True,
) -> GitResult:
    """Run git to completion and collect its output (`dies_with_node`: see start_git).

    Raises GitCommandError on a non-zero exit when `check`; kills the child when the
    calling task is cancelled.
    """
    started = time.monotonic()
    proc = await start_git(
        args,
        git_dir=git_dir,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        git_binary=git_binary,
        dies_with_node=dies_with_node,
    )
    try:
        out, err = await proc.communicate(stdin)
    except BaseException:
        await _kill(proc)
        raise
    code = proc.returncode if proc.returncode is not None else -1
    GIT_DURATION.labels(git_command_label(_command_of(args))).observe(time.monotonic() - started)
    if check and code != 0:
        raise GitCommandError(args, code, err)
    return GitResult(out, err, code)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL git and reap it (see kill_process)."""
    kill_process(proc)
    await asyncio.shield(proc.wait())


def kill_process(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL `proc` if it still runs and close our ends of its pipes, so that a later
    `proc.wait()` returns: asyncio's wait() also waits for every pipe to close, which
    never happens while a grandchild (a hook, a shell alias) keeps one open, or while
    unread output fills a pipe whose reading is paused."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    transport = getattr(proc, "_transport", None)  # asyncio keeps it private
    for fd in (0, 1, 2):
        pipe = transport.get_pipe_transport(fd) if transport is not None else None
        if pipe is not None:
            pipe.close()


async def git_version(git_binary: str = GIT_BINARY) -> str:
    """The version git reports, e.g. "2.39.5"."""
    result = await run_git(["version"], git_binary=git_binary)
    return result.text.removeprefix("git version ").strip()
