"""A node that starts over a storage left behind by a crash cleans it first."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pygit2
import pytest

from cluster.testing import free_port
from node import janitor
from node.config import NodeConfig
from node.server import NodeServer
from node.storage import TEMP_MARKER


@contextlib.asynccontextmanager
async def started(storage: Path, token: str, **settings: Any) -> AsyncIterator[NodeServer]:
    """A NodeServer over `storage` with `settings`, started, and stopped on exit."""
    config = NodeConfig(
        name="node-s", listen_addr=f"127.0.0.1:{free_port()}", storage_path=storage, token=token, **settings
    )
    server = NodeServer(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


async def test_start_removes_crash_leftovers_and_keeps_repositories(tmp_path: Path, token: str) -> None:
    storage = tmp_path / "storage"
    repo = storage / "group" / "kept.git"
    pygit2.init_repository(str(repo), bare=True)
    leftover = storage / "group" / f"half{TEMP_MARKER}made"
    (leftover / "objects").mkdir(parents=True)
    async with started(storage, token):
        assert not leftover.exists()
        assert (repo / "HEAD").is_file()


async def test_start_reads_no_loose_object_directory(
    tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start sweep (before the node binds) lists a repository's objects/, pack/, top
    and refs/, never its up to 256 loose-object directories: at 100,000 repositories with
    100 each, that was 10 million directory reads before serving (28.8 s for 2,000 such
    repositories with a cold cache). A loose temporary left by the previous life goes by
    age, on the schedule."""
    storage = tmp_path / "storage"
    repo = storage / "kept.git"
    pygit2.init_repository(str(repo), bare=True)
    fanouts = [repo / "objects" / f"{n:02x}" for n in range(256)]
    for fanout in fanouts:
        fanout.mkdir(exist_ok=True)
        (fanout / ("0" * 38)).write_bytes(b"a loose object")
    stale = fanouts[7] / "tmp_obj_CRASH1"
    stale.write_bytes(b"half an object")
    stamp = time.time() - 2 * 3600
    os.utime(stale, (stamp, stamp))
    read: list[str] = []
    real_listdir = os.listdir

    def counting_listdir(path: Any = ".") -> list[str]:
        read.append(os.fspath(path))
        return real_listdir(path)

    monkeypatch.setattr(janitor.os, "listdir", counting_listdir)
    async with started(storage, token, temporaries_sweep_interval=0.2, temporaries_max_age=3600.0):
        loose_reads = [p for p in map(Path, read) if p.parent == repo / "objects" and len(p.name) == 2]
        assert loose_reads == [], f"the start read {len(loose_reads)} loose-object directories"
        for _ in range(400):  # generous; the first scheduled sweep comes after 0.2 s
            if not stale.exists():
                break
            await asyncio.sleep(0.05)
        assert not stale.exists()
        assert all((fanout / ("0" * 38)).is_file() for fanout in fanouts)


async def test_the_scheduled_sweep_survives_an_unexpected_error(
    tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error the sweep did not expect (here RuntimeError, as `asyncio.to_thread`
    raises when no thread can start) is logged, and the next sweep runs on schedule: the
    task used to end for ever, silently."""
    calls: list[bool] = []
    real_sweep = janitor.sweep_storage

    def failing_once(root: Path, max_age: float, *args: Any, **kwargs: Any) -> list[Path]:
        if max_age:  # a scheduled sweep (the start's is max_age 0)
            calls.append(True)
            if len(calls) == 1:
                raise RuntimeError("can't start new thread")
        return real_sweep(root, max_age, *args, **kwargs)

    monkeypatch.setattr(janitor, "sweep_storage", failing_once)
    async with started(
        tmp_path / "storage", token, temporaries_sweep_interval=0.05, temporaries_max_age=3600.0
    ):
        for _ in range(400):  # generous: sweeps come every 0.05 s
            if len(calls) >= 2:
                break
            await asyncio.sleep(0.05)
        assert len(calls) >= 2, "no sweep ran after the failed one"


async def test_a_stopping_node_ends_its_sweep_at_the_next_repository(
    tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep of 100,000 repositories takes minutes (in a thread, which the process
    waits for when it exits): the node's stop ends it before the next repository, so a
    stop waits for one repository at most."""
    storage = tmp_path / "storage"
    for name in ("a.git", "b.git"):
        pygit2.init_repository(str(storage / name), bare=True)
    entered, release = threading.Event(), threading.Event()
    swept: list[Path] = []
    finished = threading.Event()
    real_repository, real_storage = janitor.sweep_repository, janitor.sweep_storage

    def slow_repository(path: Path, max_age: float, *args: Any, **kwargs: Any) -> list[Path]:
        if max_age:  # scheduled sweeps only
            swept.append(path)
            entered.set()
            release.wait(30)
        return real_repository(path, max_age, *args, **kwargs)

    def watched_storage(root: Path, max_age: float, *args: Any, **kwargs: Any) -> list[Path]:
        try:
            return real_storage(root, max_age, *args, **kwargs)
        finally:
            if max_age:
                finished.set()

    monkeypatch.setattr(janitor, "sweep_repository", slow_repository)
    monkeypatch.setattr(janitor, "sweep_storage", watched_storage)
    async with started(storage, token, temporaries_sweep_interval=0.05, temporaries_max_age=3600.0):
        assert await asyncio.to_thread(entered.wait, 30), "no scheduled sweep began"
    release.set()
    assert await asyncio.to_thread(finished.wait, 30), "the sweep did not end"
    assert len(swept) == 1, f"the sweep went on after the stop: {[p.name for p in swept]}"
