"""node.git: the real git binary from asyncio, with a scrubbed environment."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from node.git import GitCommandError, git_env, git_version, run_git


async def test_runs_git_and_passes_stdin(tmp_path: Path) -> None:
    await run_git(["init", "-q", "--bare", str(tmp_path / "r.git")])
    result = await run_git(["hash-object", "-w", "--stdin"], git_dir=tmp_path / "r.git", stdin=b"hello\n")
    expected = hashlib.sha1(b"blob 6\0hello\n").hexdigest()
    assert (result.text, result.exit_code) == (expected, 0)
    assert (tmp_path / "r.git/objects" / expected[:2] / expected[2:]).is_file()
    assert (await git_version()).split(".")[0].isdigit()


async def test_failure_raises_with_stderr_and_exit_code(tmp_path: Path) -> None:
    with pytest.raises(GitCommandError) as info:
        await run_git(["rev-parse", "--verify", "nope"], git_dir=tmp_path)
    assert info.value.exit_code == 128
    assert "not a git repository" in info.value.stderr_text
    assert str(info.value).startswith("git rev-parse failed with exit code 128")
    unchecked = await run_git(["rev-parse", "--verify", "nope"], git_dir=tmp_path, check=False)
    assert unchecked.exit_code == 128


async def test_a_string_is_refused() -> None:
    with pytest.raises(TypeError):
        await run_git("status")  # type: ignore[arg-type]


async def test_environment_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[gitraft]\n\tleak = user\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere.git"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'gitraft.leak=params'")
    env = git_env({"GIT_PROTOCOL": "version=2"})
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_PROTOCOL"] == "version=2"
    assert "GIT_DIR" not in env and "HOME" not in env and env["PATH"] == os.environ["PATH"]
    result = await run_git(["config", "--get", "gitraft.leak"], cwd=tmp_path, check=False)
    assert (result.exit_code, result.stdout) == (1, b"")


async def test_cancellation_kills_git_even_when_a_grandchild_holds_its_pipes() -> None:
    # The alias's shell outlives git and keeps stdout open until a write fails (SIGPIPE),
    # which happens once run_git closed its ends of the pipes.
    hang = "alias.hang=!while :; do echo tick; sleep 0.05; done"
    task = asyncio.create_task(run_git(["-c", hang, "hang"]))
    await asyncio.sleep(0.3)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
