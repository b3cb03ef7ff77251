"""Client workloads of a chaos run, each a thread that loops until told to stop and
records every operation in the History.

- `BranchWriter`: pushes chained commits to its own branch (`refs/heads/w-<n>`).
- `SharedWriter`: fetches the shared branch, commits on top, pushes (a push that lost
  the race is rejected by git: outcome `failed`).
- `Reader`: `git ls-remote` or `git fetch` of every branch through a random proxy.
- `CasClient`: a compare-and-set register on a ref through gRPC
  `RefService/UpdateReferences` (expected old value) and `ListRefs`, through a random
  proxy per operation. The register's ref changes every `segment_seconds`, so each
  register's history stays small enough for the linearizability search.

Op kinds and values (for the checkers):
- `push`: args {branch, commit, parent}; value None;
- `read`: value {branch: commit} of every branch seen (refs/heads/* only); args
  `branches`, when present, limits what the read looked at;
- `cas-read`: args {key}; value the commit the ref points at, or None;
- `cas-write`: args {key, new}; `cas`: args {key, old, new}.

Every workload picks its proxies with its own random.Random(seed) (the thread timing
is not reproducible; the choices are).
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cluster.testing import commit_file, run_git, token_channel
from gitraft.v1 import ref_pb2, ref_pb2_grpc, shared_pb2
from tests.chaos.harness.history import FAILED, OK, UNKNOWN, History

SHARED = "shared"
ZERO = "0" * 40
GIT_TIMEOUT = 60.0
RPC_TIMEOUT = 15.0
# git's messages for a push it refused to send or the remote refused to apply because
# the branch moved: the push certainly did not take effect.
REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "stale info")


@dataclass
class Target:
    """What workloads need of the cluster: proxy names, a git URL and a gRPC address
    per proxy, the client token, and the repository's client-facing path."""

    proxies: list[str]
    git_url: Callable[[str], str]
    grpc_address: Callable[[str], str]
    token: str
    relative_path: str


@dataclass
class CommitGraph:
    """Every commit the workloads made: commit -> parent (thread-safe)."""

    parents: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, commit: str, parent: str) -> None:
        with self.lock:
            self.parents[commit] = parent

    def known(self, commit: str) -> bool:
        with self.lock:
            return commit in self.parents

    def ancestors(self, commit: str) -> set[str]:
        """`commit` and every ancestor the workloads know of."""
        seen: set[str] = set()
        with self.lock:
            while commit and commit not in seen:
                seen.add(commit)
                commit = self.parents.get(commit, "")
        return seen

    def contains(self, tip: str | None, commit: str) -> bool:
        """Whether `commit` is `tip` or one of its ancestors."""
        return tip is not None and commit in self.ancestors(tip)


def push_outcome(done: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    if done.returncode == 0:
        return OK, ""
    err = done.stderr.strip()[-300:]
    if any(word in err for word in REJECTED):
        return FAILED, err
    return UNKNOWN, err


class Workload(threading.Thread):
    """A workload thread: `step()` until `stop` is set, with a random pause of up to
    `think` seconds between steps; no exception escapes (an unexpected one is kept in
    `crash` and ends the thread)."""

    def __init__(
        self,
        name: str,
        history: History,
        target: Target,
        seed: int,
        stop: threading.Event,
        think: float = 0.2,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.think = think
        self.client = name
        self.history = history
        self.target = target
        self.rng = random.Random(seed)
        self.stop_event = stop
        self.crash: BaseException | None = None

    def proxy(self) -> str:
        return self.rng.choice(self.target.proxies)

    def step(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.step()
                self.stop_event.wait(self.rng.uniform(0.0, self.think))
        except BaseException as exc:
            self.crash = exc


class BranchWriter(Workload):
    """Chained commits to its own branch `w-<name>`; `work` is a clone of the seed."""

    def __init__(self, *args: object, work: Path, graph: CommitGraph, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.work = work
        self.graph = graph
        self.branch = f"w-{self.client}"
        self.count = 0

    def step(self) -> None:
        parent = run_git("rev-parse", "HEAD", cwd=self.work).stdout.strip()
        self.count += 1
        commit = commit_file(self.work, f"{self.client}.txt", f"{self.client} {self.count}\n")
        self.graph.add(commit, parent)
        proxy = self.proxy()
        op = self.history.invoke(self.client, "push", proxy, branch=self.branch, commit=commit, parent=parent)
        try:
            done = run_git(
                "push", "-q", self.target.git_url(proxy), f"HEAD:refs/heads/{self.branch}",
                cwd=self.work, check=False, timeout=GIT_TIMEOUT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            self.history.complete(op, UNKNOWN, error="git push timed out")
            return
        outcome, err = push_outcome(done)
        self.history.complete(op, outcome, error=err)


class SharedWriter(Workload):
    """Fetch `shared`, commit on top, push; a lost race is a rejected push."""

    def __init__(self, *args: object, work: Path, graph: CommitGraph, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.work = work
        self.graph = graph
        self.count = 0

    def step(self) -> None:
        proxy = self.proxy()
        read = self.history.invoke(self.client, "read", proxy, via="fetch", branches=[SHARED])
        try:
            done = run_git(
                "fetch", "-q", self.target.git_url(proxy), f"+refs/heads/{SHARED}:refs/remotes/r/{SHARED}",
                cwd=self.work, check=False, timeout=GIT_TIMEOUT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            self.history.complete(read, UNKNOWN, error="git fetch timed out")
            return
        if done.returncode != 0:
            self.history.complete(read, UNKNOWN, error=done.stderr.strip()[-300:])
            return
        parent = run_git("rev-parse", f"refs/remotes/r/{SHARED}", cwd=self.work).stdout.strip()
        self.history.complete(read, OK, value={SHARED: parent})
        run_git("checkout", "-q", "--detach", parent, cwd=self.work)
        self.count += 1
        commit = commit_file(self.work, f"shared-{self.client}.txt", f"{self.client} {self.count}\n")
        self.graph.add(commit, parent)
        proxy = self.proxy()
        op = self.history.invoke(self.client, "push", proxy, branch=SHARED, commit=commit, parent=parent)
        try:
            pushed = run_git(
                "push", "-q", self.target.git_url(proxy), f"HEAD:refs/heads/{SHARED}",
                cwd=self.work, check=False, timeout=GIT_TIMEOUT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            self.history.complete(op, UNKNOWN, error="git push timed out")
            return
        outcome, err = push_outcome(pushed)
        self.history.complete(op, outcome, error=err)


class Reader(Workload):
    """`git ls-remote` (or a fetch of every branch, one step in three) through a random
    proxy; the value is every branch it saw."""

    def __init__(self, *args: object, work: Path, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.work = work

    def step(self) -> None:
        proxy = self.proxy()
        via = "fetch" if self.rng.random() < 0.33 else "ls-remote"
        op = self.history.invoke(self.client, "read", proxy, via=via)
        url = self.target.git_url(proxy)
        try:
            if via == "fetch":
                done = run_git(
                    "fetch", "-q", "--prune", url, "+refs/heads/*:refs/remotes/r/*",
                    cwd=self.work, check=False, timeout=GIT_TIMEOUT,
                )  # fmt: skip
                if done.returncode == 0:
                    listed = run_git(
                        "for-each-ref", "--format=%(objectname) %(refname)", "refs/remotes/r/", cwd=self.work
                    ).stdout
                    seen = {ref.removeprefix("refs/remotes/r/"): oid for oid, ref in _pairs(listed, " ")}
            else:
                done = run_git("ls-remote", "--heads", url, cwd=self.work, check=False, timeout=GIT_TIMEOUT)
                if done.returncode == 0:
                    seen = {ref.removeprefix("refs/heads/"): oid for oid, ref in _pairs(done.stdout, "\t")}
        except subprocess.TimeoutExpired:
            self.history.complete(op, UNKNOWN, error=f"git {via} timed out")
            return
        if done.returncode != 0:
            self.history.complete(op, UNKNOWN, error=done.stderr.strip()[-300:])
            return
        self.history.complete(op, OK, value=seen)


def _pairs(text: str, sep: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        oid, _, ref = line.partition(sep)
        if oid and ref:
            out.append((oid.strip(), ref.strip()))
    return out


class CasClient(Workload):
    """Reads, writes and compare-and-sets of a register ref through gRPC.

    `values` are existing commits (the register holds one of them); the register is
    `refs/registers/reg-<k>` (out of the branches the git workloads read) with
    k = elapsed seconds // `segment_seconds`.
    """

    def __init__(
        self, *args: object, values: list[str], start: float, segment_seconds: float = 15.0, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.values = values
        self.start_time = start
        self.segment_seconds = segment_seconds
        self.channels: dict[str, grpc.Channel] = {}
        self.last: dict[str, str | None] = {}

    def stub(self, proxy: str) -> ref_pb2_grpc.RefServiceStub:
        if proxy not in self.channels:
            self.channels[proxy] = token_channel(self.target.grpc_address(proxy), self.target.token)
        return ref_pb2_grpc.RefServiceStub(self.channels[proxy])

    def key(self) -> str:
        return f"reg-{int((time.monotonic() - self.start_time) // self.segment_seconds)}"

    def step(self) -> None:
        key = self.key()
        ref = f"refs/registers/{key}"
        repo = shared_pb2.Repository(relative_path=self.target.relative_path)
        proxy = self.proxy()
        stub = self.stub(proxy)
        roll = self.rng.random()
        if roll < 0.4:
            op = self.history.invoke(self.client, "cas-read", proxy, key=key)
            try:
                pages = stub.ListRefs(
                    ref_pb2.ListRefsRequest(repository=repo, patterns=[ref]), timeout=RPC_TIMEOUT
                )
                found = [r.target for page in pages for r in page.refs if r.name == ref]
            except grpc.RpcError as exc:
                self.history.complete(op, UNKNOWN, error=f"{exc.code().name}: {exc.details()}")
                return
            value = found[0] if found else None
            self.last[key] = value
            self.history.complete(op, OK, value=value)
            return
        new = self.rng.choice(self.values)
        if roll < 0.6:
            op = self.history.invoke(self.client, "cas-write", proxy, key=key, new=new)
            update = ref_pb2.ReferenceUpdate(ref=ref, old_oid="", new_oid=new)
        else:
            old = self.last.get(key)
            op = self.history.invoke(self.client, "cas", proxy, key=key, old=old, new=new)
            update = ref_pb2.ReferenceUpdate(ref=ref, old_oid=old or ZERO, new_oid=new)
        try:
            stub.UpdateReferences(
                ref_pb2.UpdateReferencesRequest(repository=repo, updates=[update]), timeout=RPC_TIMEOUT
            )
        except grpc.RpcError as exc:
            code = exc.code()
            outcome = (
                FAILED if code in (grpc.StatusCode.FAILED_PRECONDITION,) and op.kind == "cas" else UNKNOWN
            )
            self.history.complete(op, outcome, error=f"{code.name}: {exc.details()}")
            if outcome == FAILED:
                self.last.pop(key, None)
            return
        self.last[key] = new
        self.history.complete(op, OK)

    def run(self) -> None:
        try:
            super().run()
        finally:
            for channel in self.channels.values():
                channel.close()
