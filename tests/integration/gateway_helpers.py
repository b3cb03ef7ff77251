"""Helpers for the gateway, smart-HTTP and replication integration tests.

The gateway runs in the test's event loop, so git must never block that loop: every
git call here goes through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.integration.conftest import GIT_ENV, git_cli


async def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """The real git in a worker thread; raises CalledProcessError, returns stdout."""
    return await asyncio.to_thread(git_cli, *args, cwd=cwd, env=env)


async def git_fails(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run git expecting failure; returns its stderr."""
    try:
        await git(*args, cwd=cwd, env=env)
    except subprocess.CalledProcessError as exc:
        return str(exc.stderr)
    raise AssertionError(f"git {' '.join(args)} succeeded")


async def git_stderr(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run git expecting success; returns its stderr (for traces)."""

    def run() -> str:
        full_env = {**os.environ, **GIT_ENV, **(env or {})}
        done = subprocess.run(["git", *args], cwd=cwd, env=full_env, capture_output=True, check=True)
        return done.stderr.decode(errors="replace")

    return await asyncio.to_thread(run)


def refs_of(git_dir: Path) -> dict[str, str]:
    """refname -> object id of every ref in a repository (HEAD excluded)."""
    out = git_cli("for-each-ref", "--format=%(refname) %(objectname)", cwd=git_dir)
    return dict(line.split(" ", 1) for line in out.splitlines())


def object_count(git_dir: Path) -> int:
    """Loose plus packed objects (`git count-objects -v`)."""
    fields = dict(line.split(": ", 1) for line in git_cli("count-objects", "-v", cwd=git_dir).splitlines())
    return int(fields["count"]) + int(fields["in-pack"])


async def raw_http(
    port: int, request_line: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, str]:
    """Send exactly `request_line` (no client-side URL normalisation); (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [request_line, "Host: 127.0.0.1", "Connection: close", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, payload.decode(errors="replace")


def git_children(pid: int) -> int:
    """Processes whose parent is `pid` and whose command is git."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and cmdline.split(b"\0", 1)[0].endswith(b"git"):
            count += 1
    return count


async def wait_for(condition: Any) -> None:
    """Poll `condition` until true; fail after a generous 20 s (no timing asserted)."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met within 20 s")
