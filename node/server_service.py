"""ServerService on a storage node: what this server is, and which repositories it holds.

ServerInfo answers the versions, the storage name and the bytes free on its disk; with
`check_writable` it also writes, syncs and removes a small temporary file at the
storage root (its name holds TEMP_MARKER, so a listing never shows it) and says whether
that worked (`storage_error` names the OS error, never a path).

ListStorageRepositories walks the storage root in a worker thread: a directory that is a
bare repository is listed and not descended into; symbolic links are not followed; the
temporary directories of an atomic create, remove or replication (names containing
TEMP_MARKER) are skipped. Paths come sorted, RELATIVE_PATHS_PER_MESSAGE a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc

from common.errors import InvalidArgumentError
from gitraft.v1 import server_pb2, server_pb2_grpc
from node.git import git_version
from node.storage import TEMP_MARKER, Storage, is_bare_repository

RELATIVE_PATHS_PER_MESSAGE = 500


def server_version() -> str:
    """The installed gitraft version ("unknown" when run from an uninstalled tree)."""
    try:
        return importlib.metadata.version("gitraft")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class ServerServicer(server_pb2_grpc.ServerServiceServicer):
    """Serves ServerService for one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._git_version = ""

    async def ServerInfo(
        self, request: server_pb2.ServerInfoRequest, context: grpc.aio.ServicerContext
    ) -> server_pb2.ServerInfoResponse:
        """Versions, storage name and the bytes free for an unprivileged user on its disk."""
        if not self._git_version:
            self._git_version = await git_version()
        free = await asyncio.to_thread(shutil.disk_usage, self.storage.root)
        error = await asyncio.to_thread(write_probe, self.storage.root) if request.check_writable else ""
        return server_pb2.ServerInfoResponse(
            server_version=server_version(),
            git_version=self._git_version,
            storage_name=self.storage.name,
            free_bytes=free.free,
            storage_writable=request.check_writable and not error,
            storage_error=error,
        )

    async def ListStorageRepositories(
        self, request: server_pb2.ListStorageRepositoriesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[server_pb2.ListStorageRepositoriesResponse]:
        if request.storage_name and request.storage_name != self.storage.name:
            raise InvalidArgumentError(
                f"storage {request.storage_name!r} is not served here (this is {self.storage.name!r})"
            )
        paths = await asyncio.to_thread(lambda: list(find_repositories(self.storage.root)))
        for start in range(0, len(paths), RELATIVE_PATHS_PER_MESSAGE):
            batch = paths[start : start + RELATIVE_PATHS_PER_MESSAGE]
            yield server_pb2.ListStorageRepositoriesResponse(relative_paths=batch)


def write_probe(root: Path) -> str:
    """Blocking: write, fsync and remove a small file under `root`; "" when it worked,
    else the OS error's description (no path)."""
    probe = root / f".write-probe{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"gitraft")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink()
        return exc.strerror or "write failed"
    return ""


def find_repositories(root: Path) -> Iterator[str]:
    """Blocking: relative paths (with '/') of the bare repositories under `root`, sorted."""
    stack = [root]
    found: list[str] = []
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # removed or unreadable meanwhile
        for entry in entries:
            if TEMP_MARKER in entry.name or not entry.is_dir(follow_symlinks=False):
                continue
            path = Path(entry.path)
            if is_bare_repository(path):
                found.append(path.relative_to(root).as_posix())
            else:
                stack.append(path)
    yield from sorted(found)
