"""Fixtures for integration tests against real node processes.

Fixtures:
- `node`: one started NodeProcess per test module (stopped at teardown). Tests share it,
  so each test works on its own repository (`new_repo`).
- `node_stub(StubClass)`: a stub on the node whose calls carry the token.
- `new_repo(default_branch="")`: a repository created through CreateRepository, as
  `(Repository message, path on disk)`.
- `work_tree`: a non-bare repository on `main` with three commits, ready to push.

Helpers (import them): `git_cli(*args, cwd=...)` runs the real git without user or
system config, with fixed identities (`GIT_ENV`, from cluster.testing);
`commit_file(work, name, content, message)`; `repository_factory(node_stub, request,
on_disk)` builds a `new_repo` (proxy_target.py uses it too).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from cluster.testing import GIT_ENV, NodeProcess, token_channel
from gitraft.v1 import repository_pb2, repository_pb2_grpc, shared_pb2

# Distinct, increasing commit times, so `git rev-list` order is fully determined.
_clock = itertools.count(1_700_000_000, 60)


def git_cli(*args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run git, raise on failure, return stdout (text)."""
    env = {**os.environ, **GIT_ENV, **(env or {})}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=stdin, check=True, capture_output=True, text=True
    )
    return done.stdout


def commit_file(work: Path, name: str, content: str | bytes, message: str) -> str:
    """Write `name` in the work tree `work`, commit it, return the new commit id."""
    target = work / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    date = f"@{next(_clock)} +0000"
    git_cli("add", name, cwd=work)
    dates = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    git_cli("commit", "-q", "-m", message, cwd=work, env=dates)
    return git_cli("rev-parse", "HEAD", cwd=work).strip()


class NewRepo(Protocol):
    def __call__(self, default_branch: str = "") -> tuple[shared_pb2.Repository, Path]: ...


def repository_factory(
    node_stub: Callable[[type], Any], request: pytest.FixtureRequest, on_disk: Callable[[str], Path]
) -> NewRepo:
    """A `new_repo`: creates repositories through CreateRepository on `node_stub`, named
    after the test; `on_disk(relative_path)` says where the repository is on disk."""
    stub = node_stub(repository_pb2_grpc.RepositoryServiceStub)
    counter = itertools.count()

    def create(default_branch: str = "") -> tuple[shared_pb2.Repository, Path]:
        rel = f"tests/{re.sub(r'[^A-Za-z0-9_.-]', '_', request.node.name)}-{next(counter)}.git"
        repo = shared_pb2.Repository(relative_path=rel)
        req = repository_pb2.CreateRepositoryRequest(repository=repo, default_branch=default_branch)
        stub.CreateRepository(req, timeout=10)
        return repo, on_disk(rel)

    return create


def token_stubs(address: str, token: str) -> Iterator[Callable[[type], Any]]:
    """Yields `stub_of(StubClass)`: stubs on one channel to `address` whose calls carry
    `token`; the channel is closed once the generator resumes (a fixture's teardown)."""
    channel = token_channel(address, token)
    try:
        yield lambda stub_class: stub_class(channel)
    finally:
        channel.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A started storage node, shared by the tests of one module."""
    workdir = tmp_path_factory.mktemp("node")
    with NodeProcess("node-a", workdir, secrets.token_hex(16)).start() as proc:
        yield proc


@pytest.fixture(scope="module")
def node_stub(node: NodeProcess) -> Iterator[Callable[[type], Any]]:
    """`node_stub(SomeServiceStub)`: a stub whose calls carry the node's token."""
    yield from token_stubs(node.address, node.token)


@pytest.fixture
def new_repo(node: NodeProcess, node_stub: Callable[[type], Any], request: pytest.FixtureRequest) -> NewRepo:
    """Creates repositories through the RPC, named after the test."""
    return repository_factory(node_stub, request, lambda rel: node.storage_path / rel)


@pytest.fixture
def work_tree(tmp_path: Path) -> Path:
    """A work tree on branch main with three commits (a.txt, dir/b.txt)."""
    work = tmp_path / "work"
    work.mkdir()
    git_cli("init", "-q", "-b", "main", cwd=work)
    commit_file(work, "a.txt", "one\n", "first")
    commit_file(work, "dir/b.txt", "two\n", "second\n\nwith a body\n")
    commit_file(work, "a.txt", "three\n", "third")
    return work
