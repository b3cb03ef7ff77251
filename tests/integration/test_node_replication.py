"""ReplicateRepository between two real node processes, checked with git on both disks.

Every test runs twice (the `nodes` fixture's params): with the nodes' default
`replication_copy_limit`, where these small repositories are copied as files
(node.replica_copy), and with it 0, where every replication runs `git fetch`."""

from __future__ import annotations

import contextlib
import itertools
import secrets
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from cluster.testing import free_port
from common.auth import bearer_metadata
from gitraft.v1 import repository_pb2 as pb
from gitraft.v1 import repository_pb2_grpc, shared_pb2
from node.replication_source import CONNECT_TIMEOUT
from tests.integration.conftest import git_cli
from tests.integration.gateway_helpers import refs_of
from tests.integration.git_objects import dangerous_commits, legacy_history
from tests.integration.tuned_node import TunedNode

_names = itertools.count()


@dataclass
class Node:
    """A running node with a RepositoryService stub that carries its token."""

    process: TunedNode
    stub: Any

    def call(self, method: str, request: Any) -> Any:
        return getattr(self.stub, method)(request, metadata=bearer_metadata(self.process.token), timeout=60)

    def path(self, repo: shared_pb2.Repository) -> Path:
        return self.process.storage_path / repo.relative_path

    def checksum(self, repo: shared_pb2.Repository) -> str:
        return str(self.call("RepositoryChecksum", pb.RepositoryChecksumRequest(repository=repo)).checksum)

    def create(self, default_branch: str = "main") -> shared_pb2.Repository:
        repo = shared_pb2.Repository(relative_path=f"repl/{next(_names)}-{secrets.token_hex(3)}.git")
        self.call(
            "CreateRepository", pb.CreateRepositoryRequest(repository=repo, default_branch=default_branch)
        )
        return repo


# The nodes' extra configuration per mode of the `nodes` fixture.
MODES = {"copy": "", "fetch": "replication_copy_limit = 0\n"}


@contextlib.contextmanager
def node_pair(workdir: Path, extra_toml: str = "") -> Iterator[tuple[Node, Node]]:
    """node-a and node-b started under `workdir`, each with a client; stopped on exit."""
    with (
        TunedNode("node-a", workdir, secrets.token_hex(16), extra_toml=extra_toml).start() as a,
        TunedNode(
            "node-b", workdir, secrets.token_hex(16), metrics_port=free_port(), extra_toml=extra_toml
        ).start() as b,
        grpc.insecure_channel(a.address) as channel_a,
        grpc.insecure_channel(b.address) as channel_b,
    ):
        yield (
            Node(a, repository_pb2_grpc.RepositoryServiceStub(channel_a)),
            Node(b, repository_pb2_grpc.RepositoryServiceStub(channel_b)),
        )


@pytest.fixture(scope="module", params=sorted(MODES))
def nodes(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Node, Node]]:
    with node_pair(tmp_path_factory.mktemp(f"replication-{request.param}"), MODES[request.param]) as pair:
        yield pair


def replications(node: Node, how: str) -> float:
    """gitraft_node_replications_total{how} on `node` (which serves /metrics)."""
    url = f"http://{node.process.metrics_addr}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    prefix = f'gitraft_node_replications_total{{how="{how}"}} '
    return next((float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def copying(nodes: tuple[Node, Node]) -> bool:
    """Whether the pair copies small repositories (the `copy` mode)."""
    return "replication_copy_limit = 0" not in nodes[1].process.extra_toml


def replicate(
    target: Node, repo: shared_pb2.Repository, source: Node, source_repo: shared_pb2.Repository
) -> pb.ReplicateRepositoryResponse:
    node = shared_pb2.NodeAddress(
        name=source.process.name, address=source.process.address, token=source.process.token
    )
    request = pb.ReplicateRepositoryRequest(repository=repo, source=source_repo, source_node=node)
    return target.call("ReplicateRepository", request)


def head_of(git_dir: Path) -> str:
    return git_cli("symbolic-ref", "HEAD", cwd=git_dir).strip()


def assert_mirrored(a: Node, repo_a: shared_pb2.Repository, b: Node, repo_b: shared_pb2.Repository) -> None:
    assert refs_of(b.path(repo_b)) == refs_of(a.path(repo_a))
    assert head_of(b.path(repo_b)) == head_of(a.path(repo_a))
    assert b.checksum(repo_b) == a.checksum(repo_a)
    git_cli("fsck", "--connectivity-only", "--no-dangling", cwd=b.path(repo_b))


def fast_import(git_dir: Path, ref: str, count: int, start: int = 0, blob_size: int = 400) -> None:
    """`count` commits on `ref`, each rewriting one of 16 files with `blob_size` random bytes."""
    stream = bytearray()
    for i in range(start, start + count):
        blob, message = secrets.token_bytes(blob_size), f"commit {i}\n".encode()
        stream += f"commit {ref}\ncommitter t <t@t.invalid> {1_700_000_000 + i} +0000\n".encode()
        stream += b"data %d\n%s" % (len(message), message)
        if i == start and start:
            stream += f"from {ref}^0\n".encode()
        stream += b"M 644 inline files/%d.bin\ndata %d\n%s\n" % (i % 16, len(blob), blob)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=git_dir, input=bytes(stream), check=True)


def test_full_copy_mirrors_refs_tags_and_head(nodes: tuple[Node, Node], work_tree: Path) -> None:
    a, b = nodes
    source = a.create(default_branch="develop")
    git_cli("push", "-q", str(a.path(source)), "main:develop", "main~1:refs/heads/old", cwd=work_tree)
    git_cli("tag", "-a", "-m", "release", "v1", "main~2", cwd=work_tree)
    git_cli("push", "-q", str(a.path(source)), "v1", "main:refs/custom/keep", cwd=work_tree)

    target = shared_pb2.Repository(relative_path="copies/full.git")
    how = "copy" if copying(nodes) else "fetch"
    before = replications(b, how)
    answer = replicate(b, target, a, source)
    assert answer.created
    assert answer.copied == copying(nodes)
    assert replications(b, how) == before + 1
    assert answer.bytes_fetched > 0
    assert answer.checksum == a.checksum(source)
    assert_mirrored(a, source, b, target)
    assert head_of(b.path(target)) == "refs/heads/develop"
    assert set(refs_of(b.path(target))) == {
        "refs/heads/develop", "refs/heads/old", "refs/tags/v1", "refs/custom/keep"
    }  # fmt: skip
    assert [p.name for p in b.path(target).parent.iterdir()] == ["full.git"]  # no temporary left


def test_incremental_replication_moves_only_the_new_objects(
    nodes: tuple[Node, Node], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = nodes
    source = a.create()
    fast_import(a.path(source), "refs/heads/main", 3000)
    target = shared_pb2.Repository(relative_path="copies/large.git")
    full = replicate(b, target, a, source)
    assert not full.copied  # ~2 MB: over the default replication_copy_limit
    assert_mirrored(a, source, b, target)

    fast_import(a.path(source), "refs/heads/main", 1, start=3000, blob_size=100)
    incremental = replicate(b, target, a, source)
    assert not incremental.created
    assert_mirrored(a, source, b, target)
    size = a.call("RepositoryInfo", pb.RepositoryInfoRequest(repository=source)).size_bytes
    with capsys.disabled():
        print(
            f"\nreplication of a 3000-commit repository ({size} bytes on disk): full copy "
            f"{full.bytes_fetched} bytes, then one new commit {incremental.bytes_fetched} bytes"
        )
    assert incremental.bytes_fetched < 32 * 1024
    assert incremental.bytes_fetched * 50 < full.bytes_fetched


def test_deleted_rewound_refs_and_head_are_mirrored(nodes: tuple[Node, Node], work_tree: Path) -> None:
    a, b = nodes
    source = a.create()
    src = a.path(source)
    git_cli("push", "-q", str(src), "main", "main:gone", "main:rewound", "main:dir/file", cwd=work_tree)
    git_cli("tag", "t1", "main", cwd=work_tree)
    git_cli("push", "-q", str(src), "t1", cwd=work_tree)
    target = shared_pb2.Repository(relative_path="copies/changes.git")
    replicate(b, target, a, source)
    assert_mirrored(a, source, b, target)

    git_cli("update-ref", "-d", "refs/heads/gone", cwd=src)
    git_cli("update-ref", "-d", "refs/tags/t1", cwd=src)
    git_cli(
        "update-ref", "refs/heads/rewound", git_cli("rev-parse", "main~2", cwd=work_tree).strip(), cwd=src
    )
    git_cli("symbolic-ref", "HEAD", "refs/heads/rewound", cwd=src)
    answer = replicate(b, target, a, source)
    assert not answer.created
    assert answer.copied == copying(nodes)
    assert_mirrored(a, source, b, target)
    assert set(refs_of(b.path(target))) == {"refs/heads/main", "refs/heads/rewound", "refs/heads/dir/file"}

    # refs/heads/dir/file replaced by refs/heads/dir: a directory/file conflict.
    git_cli("update-ref", "-d", "refs/heads/dir/file", cwd=src)
    git_cli("update-ref", "refs/heads/dir", "refs/heads/main", cwd=src)
    assert replicate(b, target, a, source).copied == copying(nodes)
    assert_mirrored(a, source, b, target)
    assert set(refs_of(b.path(target))) == {"refs/heads/main", "refs/heads/rewound", "refs/heads/dir"}
    assert head_of(b.path(target)) == "refs/heads/rewound"


def test_an_empty_source_leaves_no_refs(nodes: tuple[Node, Node], work_tree: Path) -> None:
    a, b = nodes
    full = a.create()
    git_cli("push", "-q", str(a.path(full)), "main", "main:other", cwd=work_tree)
    target = shared_pb2.Repository(relative_path="copies/emptied.git")
    replicate(b, target, a, full)
    assert refs_of(b.path(target))

    empty = a.create(default_branch="trunk")
    answer = replicate(b, target, a, empty)
    assert refs_of(b.path(target)) == {}
    assert head_of(b.path(target)) == "refs/heads/trunk"
    assert answer.checksum == "0" * 40 == a.checksum(empty)

    fresh = shared_pb2.Repository(relative_path="copies/fresh-empty.git")
    assert replicate(b, fresh, a, empty).created
    assert refs_of(b.path(fresh)) == {}
    assert head_of(b.path(fresh)) == "refs/heads/trunk"
    # what git itself makes for an empty repository (without its template's sample
    # hooks and description), and usable
    reference = work_tree.parent / "reference-empty.git"
    git_cli("init", "-q", "--bare", "--template=", "--initial-branch=trunk", str(reference), cwd=work_tree)
    files = sorted(str(p.relative_to(b.path(fresh))) for p in b.path(fresh).rglob("*"))
    assert files == sorted(str(p.relative_to(reference)) for p in reference.rglob("*"))
    assert (b.path(fresh) / "config").read_bytes() == (reference / "config").read_bytes()
    git_cli("push", "-q", str(b.path(fresh)), "main:trunk", cwd=work_tree)  # usable
    assert set(refs_of(b.path(fresh))) == {"refs/heads/trunk"}


def test_replication_errors(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    missing = shared_pb2.Repository(relative_path="no/such.git")
    target = shared_pb2.Repository(relative_path="copies/never.git")

    def code(request: pb.ReplicateRepositoryRequest) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as info:
            b.call("ReplicateRepository", request)
        return info.value.code()

    good_node = shared_pb2.NodeAddress(name="node-a", address=a.process.address, token=a.process.token)
    request = pb.ReplicateRepositoryRequest(repository=target, source=missing, source_node=good_node)
    assert code(request) == grpc.StatusCode.NOT_FOUND

    source = a.create()
    bad_token = shared_pb2.NodeAddress(name="node-a", address=a.process.address, token="wrong")
    request = pb.ReplicateRepositoryRequest(repository=target, source=source, source_node=bad_token)
    assert code(request) == grpc.StatusCode.UNAUTHENTICATED

    request = pb.ReplicateRepositoryRequest(repository=target, source=source)
    assert code(request) == grpc.StatusCode.INVALID_ARGUMENT
    traversal = shared_pb2.Repository(relative_path="../escape.git")
    request = pb.ReplicateRepositoryRequest(repository=traversal, source=source, source_node=good_node)
    assert code(request) == grpc.StatusCode.INVALID_ARGUMENT

    copies = b.process.storage_path / "copies"
    assert not (copies / "never.git").exists()
    assert not [p for p in copies.iterdir() if "gitraft-tmp" in p.name] if copies.exists() else True


def test_many_new_refs_are_packed_on_the_target(nodes: tuple[Node, Node], work_tree: Path) -> None:
    """Thousands of loose refs would make every later fetch and checksum read them all."""
    a, b = nodes
    source = a.create()
    git_cli("push", "-q", str(a.path(source)), "main", cwd=work_tree)
    head = git_cli("rev-parse", "main", cwd=work_tree).strip()
    updates = "".join(f"create refs/heads/many/{n:04d} {head}\n" for n in range(300))
    git_cli("update-ref", "--stdin", cwd=a.path(source), stdin=updates)
    target = shared_pb2.Repository(relative_path="copies/many-refs.git")
    replicate(b, target, a, source)
    assert_mirrored(a, source, b, target)
    assert not [p for p in (b.path(target) / "refs").rglob("*") if p.is_file()]


def test_replication_checks_objects_by_the_push_policy(nodes: tuple[Node, Node], tmp_path: Path) -> None:
    """Legacy quirks replicate; a dangerous object that reached a source's disk some
    other way (not through a push) is refused by the target, with the fsck reason."""
    a, b = nodes
    work = tmp_path / "objects"
    git_cli("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    legacy_history(work)
    legacy = a.create()
    git_cli("push", "-q", str(a.path(legacy)), "main", "v-legacy", cwd=work)
    target = shared_pb2.Repository(relative_path="copies/legacy.git")
    answer = replicate(b, target, a, legacy)
    assert answer.created
    assert answer.copied == copying(nodes)  # the copy's git fsck ignores the legacy quirks too
    assert_mirrored(a, legacy, b, target)

    hostile = a.create()
    git_cli(
        "push",
        "-q",
        str(a.path(hostile)),
        f"{dangerous_commits(work)['hasDotgit']}:refs/heads/main",
        cwd=work,
    )
    refused = shared_pb2.Repository(relative_path="copies/hostile.git")
    with pytest.raises(grpc.RpcError) as info:
        replicate(b, refused, a, hostile)
    assert "hasDotgit" in str(info.value.details())
    assert not b.path(refused).exists()


def test_a_cancelled_replication_leaves_nothing_behind(nodes: tuple[Node, Node]) -> None:
    """A deadline that (most likely) expires mid-copy: no git, tunnel or temporary left."""
    a, b = nodes
    source = a.create()
    fast_import(a.path(source), "refs/heads/main", 20, blob_size=1024 * 1024)
    target = shared_pb2.Repository(relative_path="copies/cancelled.git")
    node = shared_pb2.NodeAddress(name="node-a", address=a.process.address, token=a.process.token)
    request = pb.ReplicateRepositoryRequest(repository=target, source=source, source_node=node)
    try:
        b.stub.ReplicateRepository(request, metadata=bearer_metadata(b.process.token), timeout=0.3)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert a.process.process is not None and b.process.process is not None
    pids = (a.process.process.pid, b.process.process.pid)
    wait_until(lambda: not any(descendants(pid) for pid in pids))
    copies = b.process.storage_path / "copies"
    wait_until(lambda: not [p for p in copies.iterdir() if "gitraft-tmp" in p.name])
    if (copies / "cancelled.git").exists():  # the copy won the race: then it is complete
        assert_mirrored(a, source, b, target)


def test_the_fetch_command_line_carries_no_tunnel_token(nodes: tuple[Node, Node]) -> None:
    """Any local user reads /proc/<pid>/cmdline: a one-time git:// URL in the fetch's
    arguments lets whoever reads it first spend the token and take the source
    repository through the tunnel. The URL travels in git's environment instead
    (/proc/<pid>/environ is the owner's alone)."""
    a, b = nodes
    source = a.create()
    fast_import(a.path(source), "refs/heads/main", 20, blob_size=1024 * 1024)
    target = shared_pb2.Repository(relative_path="watched/copy.git")
    place = str(b.path(target).parent).encode()
    seen: list[list[bytes]] = []
    stop = threading.Event()

    def watch() -> None:  # what `ps` would show, for every process, until the end
        while not stop.is_set():
            for entry in Path("/proc").iterdir():
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
                except OSError:
                    continue
                if b"fetch" in argv and any(place in arg for arg in argv):
                    seen.append(argv)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        replicate(b, target, a, source)
    finally:
        stop.set()
        watcher.join()
    assert seen  # the fetch was watched while it ran
    leaked = {arg for argv in seen for arg in argv if b"127.0.0.1" in arg}
    assert not leaked
    assert_mirrored(a, source, b, target)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll `condition` for up to 20 s (generous: no timing is asserted)."""
    for _ in range(400):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met within 20 s")


def test_replication_after_the_source_node_restarted(tmp_path: Path, work_tree: Path) -> None:
    """The target keeps its channel to a source node between replications: a source that
    restarted (and was unreachable meanwhile) is reached again."""
    with node_pair(tmp_path) as (a, b):
        pa = a.process
        source = a.create()
        target = shared_pb2.Repository(relative_path="copies/restarted-source.git")
        git_cli("push", "-q", str(a.path(source)), "main~1:refs/heads/main", cwd=work_tree)
        replicate(b, target, a, source)
        pa.stop()
        with pytest.raises(grpc.RpcError) as info:
            replicate(b, target, a, source)
        # UNAVAILABLE (retry later), naming the source: not DEADLINE_EXCEEDED, which
        # reads as this call's own deadline when only the reconnect wait ran out
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
        assert pa.address in str(info.value.details())
        pa.start()
        git_cli("push", "-q", str(a.path(source)), "main:main", cwd=work_tree)
        replicate(b, target, a, source)
        assert_mirrored(a, source, b, target)


def test_concurrent_first_replications_of_a_new_node_all_reach_its_tunnel_port(
    tmp_path: Path, work_tree: Path
) -> None:
    """The node opens its git:// replication port at its first replication; replications
    that arrive while it is being opened wait for it (they were given port 0)."""
    with node_pair(tmp_path) as (a, b):
        sources = [a.create() for _ in range(8)]
        for source in sources:
            git_cli("push", "-q", str(a.path(source)), "main:main", cwd=work_tree)
        targets = [shared_pb2.Repository(relative_path=f"first/{i}.git") for i in range(len(sources))]
        with ThreadPoolExecutor(len(sources)) as pool:
            answers = list(
                pool.map(lambda pair: replicate(b, pair[0], a, pair[1]), zip(targets, sources, strict=True))
            )
        assert all(answer.created for answer in answers)
        for source, target in zip(sources, targets, strict=True):
            assert_mirrored(a, source, b, target)


class SlowInfoSource(repository_pb2_grpc.RepositoryServiceServicer):
    """A healthy but busy source: RepositoryInfo answers (an empty repository) after
    `delay` seconds, past the target's wait for the connection."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def RepositoryInfo(self, request: Any, context: Any) -> pb.RepositoryInfoResponse:
        time.sleep(self.delay)
        return pb.RepositoryInfoResponse(ref_count=0, default_branch="refs/heads/main")


def test_a_source_slow_to_answer_but_connected_is_waited_for(nodes: tuple[Node, Node]) -> None:
    """Only reaching the source is bounded by CONNECT_TIMEOUT; its answer is bounded by
    the node's replication_timeout (a busy source's thread pool may queue it for seconds)."""
    _, b = nodes
    server = grpc.server(ThreadPoolExecutor(2))
    repository_pb2_grpc.add_RepositoryServiceServicer_to_server(SlowInfoSource(CONNECT_TIMEOUT + 1), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        node = shared_pb2.NodeAddress(name="busy", address=f"127.0.0.1:{port}", token="t")
        target = shared_pb2.Repository(relative_path="copies/from-busy.git")
        request = pb.ReplicateRepositoryRequest(
            repository=target, source=shared_pb2.Repository(relative_path="any.git"), source_node=node
        )
        assert b.call("ReplicateRepository", request).created
        assert head_of(b.path(target)) == "refs/heads/main"
    finally:
        server.stop(0)
