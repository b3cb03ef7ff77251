"""Streaming data through a git child process, with bounded memory.

`GitPipe` starts git (through `node.git.start_git`, so the environment is scrubbed),
feeds its stdin from an async iterator of chunks and lets the caller read stdout in
chunks while stderr is collected (its last STDERR_LIMIT bytes kept for error messages,
and each chunk handed to `on_stderr` when given).

Contract:
- Memory is bounded: one chunk in flight per direction (stdin is drained before the
  next chunk is taken; stdout is read CHUNK_SIZE at a time, only when the caller asks).
- The child's stdin is closed when the chunks end *or fail*, so git never waits forever.
- Leaving the `async with` block for any reason (an exception, a cancelled RPC because
  the client went away, a caller that stops reading stdout early) kills the child if it
  still runs and reaps it; unread output is dropped.
- `wait()` returns the exit status; `check()` raises GitCommandError (INTERNAL) with the
  tail of stderr for a non-zero one, and re-raises what failed while feeding stdin.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from common.metrics import GIT_BYTES, GIT_DURATION, git_command_label
from node.git import GitCommandError, _command_of, kill_process, start_git

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
STDERR_LIMIT = 64 * 1024


class GitPipe:
    """One git child fed from `chunks`; use as `async with GitPipe(...) as pipe:`."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        chunks: AsyncIterator[bytes] | None = None,
        on_stderr: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.args = list(args)
        self._cwd = cwd
        self._env = env
        self._chunks = chunks
        self._on_stderr = on_stderr
        self._proc: asyncio.subprocess.Process | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stderr = bytearray()
        self._feed_error: BaseException | None = None

    async def __aenter__(self) -> GitPipe:
        self._started, self._label = time.monotonic(), git_command_label(_command_of(self.args))
        self._proc = await start_git(
            self.args,
            cwd=self._cwd,
            env=self._env,
            stdin=asyncio.subprocess.PIPE if self._chunks is not None else asyncio.subprocess.DEVNULL,
        )
        if self._chunks is not None:
            self._feeder = asyncio.create_task(self._feed(self._chunks))
        self._stderr_task = asyncio.create_task(self._collect_stderr())
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._require_proc()
        for task in self._tasks():
            task.cancel()
        kill_process(proc)  # when running; closing the pipes unblocks wait() on unread output
        await asyncio.shield(self._reap(proc))
        GIT_DURATION.labels(self._label).observe(time.monotonic() - self._started)

    async def read(self, size: int = CHUNK_SIZE) -> bytes:
        """The next chunk of stdout (at most `size` bytes); b"" at end of output."""
        stdout = self._require_proc().stdout
        assert stdout is not None
        chunk = await stdout.read(size)
        GIT_BYTES.labels(self._label, "out").inc(len(chunk))
        return chunk

    async def readline(self) -> bytes:
        """The next line of stdout, newline included (b"" at end of output); ValueError
        past 64 KiB without a newline."""
        stdout = self._require_proc().stdout
        assert stdout is not None
        return await stdout.readline()

    async def stdout_chunks(self) -> AsyncIterator[bytes]:
        """Every stdout chunk until git closes its stdout."""
        while chunk := await self.read():
            yield chunk

    async def wait(self) -> int:
        """Wait for git to exit (drain stdout first) and return its status.

        Also waits for stderr to end, and stops feeding stdin: git no longer reads it.
        """
        code = await self._require_proc().wait()
        if self._stderr_task is not None:
            await asyncio.gather(self._stderr_task, return_exceptions=True)
        if self._feeder is not None:
            self._feeder.cancel()
            await asyncio.gather(self._feeder, return_exceptions=True)
        return code

    async def check(self) -> None:
        """Wait; raise GitCommandError on a non-zero exit, or the error that broke stdin."""
        code = await self.wait()
        if code != 0:
            raise GitCommandError(self.args, code, self.stderr)
        if self._feed_error is not None:
            raise self._feed_error

    @property
    def stderr(self) -> bytes:
        """What git wrote to stderr so far (the last STDERR_LIMIT bytes)."""
        return bytes(self._stderr)

    async def _feed(self, chunks: AsyncIterator[bytes]) -> None:
        stdin = self._require_proc().stdin
        assert stdin is not None
        try:
            async for chunk in chunks:
                if chunk:
                    GIT_BYTES.labels(self._label, "in").inc(len(chunk))
                    stdin.write(chunk)
                    await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # git stopped reading; its exit status says why
        except Exception as exc:
            self._feed_error = exc
            log.warning("feeding git stdin failed", extra={"git_args": self.args, "error": repr(exc)})
        finally:
            stdin.close()

    async def _collect_stderr(self) -> None:
        stderr = self._require_proc().stderr
        assert stderr is not None
        while chunk := await stderr.read(CHUNK_SIZE):
            self._stderr += chunk
            del self._stderr[:-STDERR_LIMIT]
            if self._on_stderr is not None:
                await self._on_stderr(chunk)

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        await asyncio.gather(*self._tasks(), return_exceptions=True)
        await proc.wait()

    def _tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in (self._feeder, self._stderr_task) if t is not None]

    def _require_proc(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise RuntimeError("GitPipe used outside `async with`")
        return self._proc
