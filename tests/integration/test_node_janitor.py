"""A real node removes what git left in its repositories when cut off (node.janitor):
everything at start, and what is older than `temporaries_max_age` on its own schedule
while it serves. The repositories' own objects and refs stay; the node keeps serving
them. (The quarantine of a push cut off while the node runs:
test_node_smarthttp.py::test_a_client_going_away_kills_git.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from cluster.local.ports import free_port
from cluster.testing import NodeProcess
from cluster.testing.processes import scrape_metrics
from common.auth import bearer_metadata
from gitraft.v1 import repository_pb2, repository_pb2_grpc, shared_pb2, smarthttp_pb2, smarthttp_pb2_grpc
from node.storage import init_bare_repository
from tests.integration.conftest import GIT_ENV, git_cli
from tests.integration.gateway_helpers import wait_for
from tests.integration.test_node_replication import fast_import
from tests.integration.tuned_node import TunedNode

OLD = 2 * 3600.0


def stranded(repo: Path, name: str, age: float) -> Path:
    """A quarantine a killed receive-pack left in `repo`, its files `age` seconds old."""
    directory = repo / "objects" / f"tmp_objdir-incoming-{name}"
    (directory / "pack").mkdir(parents=True)
    (directory / "pack" / "tmp_pack_x").write_bytes(os.urandom(4096))
    stamp = time.time() - age
    for path in (directory / "pack" / "tmp_pack_x", directory / "pack", directory):
        os.utime(path, (stamp, stamp))
    return directory


@pytest.fixture
def node(tmp_path: Path) -> Iterator[TunedNode]:
    node = TunedNode(
        "node-j",
        tmp_path,
        secrets.token_hex(16),
        metrics_port=free_port(),
        # replication_copy_limit 0: the replication fetches (a copy runs no index-pack).
        extra_toml="temporaries_sweep_interval = 0.2\ntemporaries_max_age = 60\nreplication_copy_limit = 0\n",
    )
    repo = node.storage_path / "group" / "a.git"
    repo.parent.mkdir(parents=True)
    init_bare_repository(repo, "refs/heads/main")
    stranded(repo, "START0", age=0.0)  # left by the node's previous life: gone at start
    (repo / "objects" / "pack" / "tmp_pack_START1").write_bytes(b"half a pack")
    (repo / "refs" / "heads" / "main.lock").write_text("0" * 40 + "\n")  # a git killed mid-update
    with node.start() as started:
        yield started


async def test_the_node_removes_stranded_temporaries_at_start_and_old_ones_while_it_runs(
    node: TunedNode,
) -> None:
    repo = node.storage_path / "group" / "a.git"
    objects = repo / "objects"
    assert not list(objects.glob("tmp_objdir-incoming-*"))
    assert not list((objects / "pack").glob("tmp_pack_*"))
    assert not (repo / "refs" / "heads" / "main.lock").exists()
    # the lock refused every update of that ref; git can take it again
    tree = git_cli("mktree", cwd=repo, stdin="").strip()
    commit = git_cli("commit-tree", "-m", "after the crash", tree, cwd=repo).strip()
    git_cli("update-ref", "refs/heads/main", commit, cwd=repo)

    fresh = stranded(repo, "FRESH0", age=0.0)  # as a running push's: left alone
    old = stranded(repo, "OLD000", age=OLD)
    await wait_for(lambda: not old.exists())
    assert fresh.exists()
    removed = {
        labels.get("kind"): value
        for name, labels, value in scrape_metrics(node.metrics_addr)
        if name == "gitraft_node_temporaries_removed_total"
    }
    assert removed.get("quarantine") == 2.0 and removed.get("pack") == 1.0, removed
    assert removed.get("lock") == 1.0, removed
    assert git_cli("symbolic-ref", "HEAD", cwd=repo).strip() == "refs/heads/main"


async def full_sweeps_ran(storage: Path) -> None:
    """Return once a whole scheduled sweep of `storage` started and ended after the call:
    an old decoy in a quiet repository is removed three times, each put back after the
    last removal (the sweeps run one after another; a removal shows the sweep that
    reached the quiet repository, the third one that the second, started after the
    first removal, ended)."""
    quiet = storage / "quiet.git"
    if not quiet.exists():
        init_bare_repository(quiet, "refs/heads/main")
    stamp = time.time() - OLD
    for _ in range(3):
        decoy = quiet / "objects" / "pack" / "tmp_pack_DECOY"
        decoy.write_bytes(b"half a pack")
        os.utime(decoy, (stamp, stamp))
        await wait_for(lambda: not decoy.exists())  # noqa: B023 - awaited in this iteration


def a_pack(scratch: Path) -> tuple[str, bytes]:
    """A commit (a file in a tree) made in the new bare repository `scratch`, and the
    pack of its three objects."""
    git_cli("init", "-q", "--bare", str(scratch), cwd=scratch.parent)
    blob = git_cli("hash-object", "-w", "--stdin", cwd=scratch, stdin="pushed\n").strip()
    tree = git_cli("mktree", cwd=scratch, stdin=f"100644 blob {blob}\tfile\n").strip()
    commit = git_cli("commit-tree", "-m", "pushed", tree, cwd=scratch).strip()
    pack = subprocess.run(
        ["git", "pack-objects", "--stdout", "--revs", "-q"],
        cwd=scratch,
        env={**os.environ, **GIT_ENV},
        input=f"{commit}\n".encode(),
        check=True,
        capture_output=True,
    ).stdout
    return commit, pack


def pkt(text: str) -> bytes:
    return f"{len(text) + 4:04x}".encode() + text.encode()


async def test_a_push_still_running_keeps_its_quarantine_however_old_it_looks(
    node: TunedNode, tmp_path: Path
) -> None:
    repo = node.storage_path / "group" / "a.git"
    objects = repo / "objects"
    commit, pack = a_pack(tmp_path / "scratch.git")
    resume = asyncio.Event()

    async def requests() -> AsyncIterator[smarthttp_pb2.PostReceivePackRequest]:
        line = pkt(f"{'0' * 40} {commit} refs/heads/main\0report-status\n") + b"0000"
        yield smarthttp_pb2.PostReceivePackRequest(
            repository=shared_pb2.Repository(relative_path="group/a.git"), data=line + pack[:12]
        )
        await resume.wait()  # a client that sends the rest of its pack much later
        yield smarthttp_pb2.PostReceivePackRequest(data=pack[12:])

    async with grpc.aio.insecure_channel(node.address) as channel:
        call = smarthttp_pb2_grpc.SmartHTTPServiceStub(channel).PostReceivePack(
            requests(), metadata=bearer_metadata(node.token)
        )
        await wait_for(lambda: bool(list(objects.glob("tmp_objdir-incoming-*"))))
        (running,) = objects.glob("tmp_objdir-incoming-*")
        # the push has been waiting for the rest of its pack for longer than
        # temporaries_max_age: its quarantine's files are that old
        stamp = time.time() - OLD
        for directory, _subdirectories, files in os.walk(running):
            for name in files:
                os.utime(os.path.join(directory, name), (stamp, stamp))
            os.utime(directory, (stamp, stamp))
        await full_sweeps_ran(node.storage_path)
        resume.set()
        answer = b"".join([message.data async for message in call])
    assert b"unpack ok" in answer and b"ok refs/heads/main" in answer, answer
    assert git_cli("rev-parse", "refs/heads/main", cwd=repo).strip() == commit


@contextlib.contextmanager
def unremovable(directory: Path) -> Iterator[None]:
    """Nothing in `directory` can be removed, even by root (a file of another owner in a
    directory not ours, a read-only or immutable mount...)."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False)
        if done.returncode:
            pytest.skip(f"chattr +i refused here: {done.stderr.decode().strip()}")
        undo = ["chattr", "-i", str(directory)]
    else:
        directory.chmod(0o555)
        undo = ["chmod", "0755", str(directory)]
    try:
        yield
    finally:
        subprocess.run(undo, check=True)


def test_a_temporary_the_node_cannot_remove_neither_stops_its_start_nor_other_repositories(
    tmp_path: Path,
) -> None:
    node = TunedNode("node-k", tmp_path, secrets.token_hex(16), extra_toml="temporaries_sweep_interval = 0\n")
    stuck = node.storage_path / "stuck.git"
    other = node.storage_path / "other.git"
    node.storage_path.mkdir(parents=True, exist_ok=True)
    for repo in (stuck, other):
        init_bare_repository(repo, "refs/heads/main")
        (repo / "refs" / "heads" / "main.lock").write_text("0" * 40 + "\n")
    with unremovable(stuck / "refs" / "heads"), node.start():  # it serves (health)
        assert not (other / "refs" / "heads" / "main.lock").exists()
        assert (stuck / "refs" / "heads" / "main.lock").exists()


def descendants_running(pid: int, command: bytes) -> list[int]:
    """The processes under `pid` (any depth) whose command line contains `command`."""
    parents: dict[int, int] = {}
    lines: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            lines[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = []
    for child, line in lines.items():
        ancestor = parents.get(child)
        while ancestor and ancestor != pid:
            ancestor = parents.get(ancestor)
        if ancestor == pid and command in line:
            found.append(child)
    return found


def test_a_replication_still_fetching_keeps_its_half_written_pack_however_old_it_looks(
    tmp_path: Path,
) -> None:
    source = NodeProcess("node-src", tmp_path, secrets.token_hex(16))
    target = TunedNode(
        "node-dst",
        tmp_path,
        secrets.token_hex(16),
        # replication_copy_limit 0: the replication fetches (a copy runs no index-pack).
        extra_toml="temporaries_sweep_interval = 0.2\ntemporaries_max_age = 60\nreplication_copy_limit = 0\n",
    )
    for node in (source, target):
        node.storage_path.mkdir(parents=True, exist_ok=True)
        init_bare_repository(node.storage_path / "r.git", "refs/heads/main")
    # a pack of ~24 MB: index-pack runs long enough to be caught (random data: no delta
    # search, which only costs time)
    git_cli("config", "pack.window", "0", cwd=source.storage_path / "r.git")
    fast_import(source.storage_path / "r.git", "refs/heads/main", 60, blob_size=400_000)
    repo = shared_pb2.Repository(relative_path="r.git")
    pack_dir = target.storage_path / "r.git" / "objects" / "pack"
    with (
        source.start(),
        target.start(),
        grpc.insecure_channel(target.address) as channel,
        ThreadPoolExecutor(1) as pool,
    ):
        assert target.process is not None
        request = repository_pb2.ReplicateRepositoryRequest(
            repository=repo,
            source=repo,
            source_node=shared_pb2.NodeAddress(name=source.name, address=source.address, token=source.token),
        )
        stub = repository_pb2_grpc.RepositoryServiceStub(channel)
        # The 24 MB fetch can end between two polls (it did, once in many runs): such an
        # attempt proves nothing either way, so the replica goes and the fetch is tried
        # again, a bounded number of times.
        index_packs: list[int] = []
        for _attempt in range(4):
            answer = pool.submit(
                stub.ReplicateRepository, request, metadata=bearer_metadata(target.token), timeout=120
            )
            deadline = time.monotonic() + 60  # generous: a bound on polling, not a timing assertion
            while not (index_packs := descendants_running(target.process.pid, b"index-pack")):
                if answer.done() or time.monotonic() > deadline:
                    break
            if index_packs:
                break
            answer.result()  # the fetch ended first: start over from an empty replica
            shutil.rmtree(target.storage_path / "r.git")
            init_bare_repository(target.storage_path / "r.git", "refs/heads/main")
        assert index_packs, "no index-pack was seen in 4 fetches"
        stopped = index_packs[0]
        os.kill(stopped, signal.SIGSTOP)  # an index-pack resolving deltas for a long time
        try:
            half = list(pack_dir.glob("tmp_pack_*"))
            assert half, "the stopped index-pack writes no temporary pack"
            stamp = time.time() - OLD
            for path in half:
                os.utime(path, (stamp, stamp))
            asyncio.run(full_sweeps_ran(target.storage_path))
        finally:
            os.kill(stopped, signal.SIGCONT)
        result = answer.result()
    assert result.checksum
    assert git_cli("rev-parse", "refs/heads/main", cwd=target.storage_path / "r.git") == git_cli(
        "rev-parse", "refs/heads/main", cwd=source.storage_path / "r.git"
    )


def loose_repository(repo_path: Path, commits: int) -> Path:
    """A new bare repository at `repo_path` whose `commits` commits of a 400 kB random
    blob each are loose objects (60: ~24 MB), so that a gc's pack-objects deflates them
    all while it writes its pack (random data, pack.window 0: no delta search, which
    only costs time)."""
    repo_path.parent.mkdir(parents=True, exist_ok=True)
    init_bare_repository(repo_path, "refs/heads/main")
    git_cli("config", "pack.window", "0", cwd=repo_path)
    fast_import(repo_path, "refs/heads/main", commits, blob_size=400_000)
    (pack,) = (repo_path / "objects" / "pack").glob("pack-*.pack")
    data = pack.read_bytes()
    for name in (repo_path / "objects" / "pack").iterdir():
        name.unlink()
    subprocess.run(["git", "unpack-objects", "-q"], cwd=repo_path, input=data, check=True)
    return repo_path


def test_an_optimization_still_writing_keeps_its_half_written_pack_however_old_it_looks(
    tmp_path: Path,
) -> None:
    node = TunedNode(
        "node-o",
        tmp_path,
        secrets.token_hex(16),
        # replication_copy_limit 0: the replication fetches (a copy runs no index-pack).
        extra_toml="temporaries_sweep_interval = 0.2\ntemporaries_max_age = 60\nreplication_copy_limit = 0\n",
    )
    repo_path = loose_repository(node.storage_path / "r.git", commits=60)
    pack_dir = repo_path / "objects" / "pack"
    with node.start(), grpc.insecure_channel(node.address) as channel, ThreadPoolExecutor(1) as pool:
        assert node.process is not None
        stub = repository_pb2_grpc.RepositoryServiceStub(channel)
        request = repository_pb2.OptimizeRepositoryRequest(
            repository=shared_pb2.Repository(relative_path="r.git")
        )
        answer = pool.submit(
            stub.OptimizeRepository, request, metadata=bearer_metadata(node.token), timeout=120
        )
        deadline = time.monotonic() + 60  # generous: a bound on polling, not a timing assertion
        while not (
            (half := list(pack_dir.glob("tmp_pack_*")))
            and (writers := descendants_running(node.process.pid, b"pack-objects"))
        ):
            assert not answer.done() and time.monotonic() < deadline, (
                "no pack-objects writing was seen",
                answer.done() and answer.exception(),
            )
        for pid in writers:
            os.kill(pid, signal.SIGSTOP)  # a pack-objects slow to write (a large repository)
        try:
            stamp = time.time() - OLD
            for path in half:
                os.utime(path, (stamp, stamp))
            asyncio.run(full_sweeps_ran(node.storage_path))
        finally:
            for pid in writers:
                os.kill(pid, signal.SIGCONT)
        answer.result()
    git_cli("fsck", "--connectivity-only", cwd=repo_path)
    assert list(pack_dir.glob("pack-*.pack"))


async def test_a_repository_under_another_ones_objects_is_no_quarantine(node: TunedNode) -> None:
    """Repository paths may nest; one whose directory (or a directory above it) is named
    like a quarantine stays when a push into the enclosing repository ends."""
    nested = ["group/a.git/objects/incoming-kept.git", "group/a.git/objects/tmp_objdir-incoming-q/deep.git"]
    async with grpc.aio.insecure_channel(node.address) as channel:
        repositories = repository_pb2_grpc.RepositoryServiceStub(channel)
        for relative_path in nested:
            await repositories.CreateRepository(
                repository_pb2.CreateRepositoryRequest(
                    repository=shared_pb2.Repository(relative_path=relative_path)
                ),
                metadata=bearer_metadata(node.token),
                timeout=10,
            )

        async def nothing_to_push() -> AsyncIterator[smarthttp_pb2.PostReceivePackRequest]:
            yield smarthttp_pb2.PostReceivePackRequest(
                repository=shared_pb2.Repository(relative_path="group/a.git"), data=b"0000"
            )

        call = smarthttp_pb2_grpc.SmartHTTPServiceStub(channel).PostReceivePack(
            nothing_to_push(), metadata=bearer_metadata(node.token)
        )
        _ = [message async for message in call]  # the push ended: quarantines were swept
    for relative_path in nested:
        assert (node.storage_path / relative_path / "HEAD").is_file(), f"{relative_path} was removed"
