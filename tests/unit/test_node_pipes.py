"""GitPipe: git fed from an async iterator, stdin always closed, errors surfaced."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from node.git import GitCommandError
from node.pipes import GitPipe


async def chunks(*parts: bytes, fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if fail:
        raise ValueError("broken request stream")


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


async def test_stdin_streams_in_and_stdout_out() -> None:
    parts = (b"a" * 100_000, b"b" * 100_000, b"", b"c")
    async with GitPipe(["hash-object", "--stdin"], chunks=chunks(*parts)) as pipe:
        out = b"".join([c async for c in pipe.stdout_chunks()])
        await pipe.check()
    assert out.decode().strip() == blob_id(b"".join(parts))


async def test_a_failing_request_stream_still_closes_stdin_and_is_raised() -> None:
    """The hang NOTES.md warns about: without closing stdin, git would wait forever."""
    async with GitPipe(["hash-object", "--stdin"], chunks=chunks(b"x", fail=True)) as pipe:
        out = await asyncio.wait_for(pipe.read(), timeout=30)
        with pytest.raises(ValueError, match="broken request stream"):
            await pipe.check()
    assert out.decode().strip() == blob_id(b"x")


async def test_non_zero_exit_raises_with_stderr() -> None:
    async with GitPipe(["rev-parse", "--verify", "no-such-ref"], chunks=chunks()) as pipe:
        _ = [c async for c in pipe.stdout_chunks()]
        with pytest.raises(GitCommandError) as info:
            await pipe.check()
    assert info.value.exit_code != 0
    assert b"fatal" in pipe.stderr


async def test_leaving_early_kills_git() -> None:
    never_ending = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"partial"
        await never_ending.wait()

    async with GitPipe(["hash-object", "--stdin"], chunks=stalled()) as pipe:
        proc = pipe._require_proc()
    assert proc.returncode is not None


def test_a_git_error_names_the_subcommand_past_config_options() -> None:
    exc = GitCommandError(["-c", "receive.fsckObjects=true", "receive-pack", "."], 128, b"fatal: x\n")
    assert str(exc) == "git receive-pack failed with exit code 128: fatal: x"


async def test_leaving_early_with_unread_output_does_not_hang() -> None:
    """stdout fills and asyncio pauses reading it: leaving must still reap git (and the
    `yes` it started) instead of waiting forever for the pipe to close."""

    async def read_a_little() -> bytes:
        async with GitPipe(["-c", "alias.spam=!yes", "spam"]) as pipe:
            await asyncio.sleep(0.2)  # let the pipe fill up
            return await pipe.read(10)

    assert await asyncio.wait_for(read_a_little(), 10) == b"y\ny\ny\ny\ny\n"
