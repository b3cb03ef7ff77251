"""Incremental replication of one new commit in a repository with many refs.

    .venv/bin/python -m bench replication_refs        (or: make bench)
    .venv/bin/python bench/replication_refs.py --refs 10000 --rounds 5

Starts two node processes; on node-a, a repository of 200 commits with REFS branches
(packed, as a server's would be), and the same history with 10 branches for
comparison. Each is fully copied to node-b with ReplicateRepository; then, ROUNDS
times, one commit is added on the source and ReplicateRepository copies it. Printed:
the median wall time of an incremental replication and the bytes the target received
(ref advertisement + negotiation + pack), and the size of the source's ref advertisement
alone, to show how much of the cost the advertisement is.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench._machine import describe
from cluster.testing import GIT_ENV, NodeProcess, run_git
from common.auth import bearer_metadata
from gitraft.v1 import repository_pb2 as pb
from gitraft.v1 import repository_pb2_grpc, shared_pb2


def history(git_dir: Path, commits: int, branches: int) -> None:
    """`commits` commits on main, then `branches` refs/heads/b/N spread over them, packed."""
    stream = bytearray()
    for i in range(commits):
        stream += b"commit refs/heads/main\nmark :%d\n" % (i + 1)
        stream += b"committer t <t@t.invalid> %d +0000\ndata 2\nc\n" % (1_700_000_000 + i)
        stream += b"M 644 inline f%d.txt\ndata 8\n%s\n" % (i % 50, secrets.token_hex(4).encode())
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=git_dir, input=bytes(stream), check=True, env=GIT_ENV
    )
    oids = run_git("rev-list", "main", cwd=git_dir).stdout.split()
    updates = "".join(f"create refs/heads/b/{n:05d} {oids[n % len(oids)]}\n" for n in range(branches))
    subprocess.run(
        ["git", "update-ref", "--stdin"], cwd=git_dir, input=updates.encode(), check=True, env=GIT_ENV
    )
    run_git("pack-refs", "--all", cwd=git_dir)


def add_commit(git_dir: Path, n: int) -> None:
    stream = b"commit refs/heads/main\ncommitter t <t@t.invalid> %d +0000\ndata 2\nn\n" % (1_800_000_000 + n)
    stream += b"from refs/heads/main^0\nM 644 inline new.txt\ndata 8\n%s\n" % secrets.token_hex(4).encode()
    subprocess.run(["git", "fast-import", "--quiet"], cwd=git_dir, input=stream, check=True, env=GIT_ENV)


def advertisement_bytes(git_dir: Path) -> int:
    done = subprocess.run(
        ["git", "upload-pack", "--advertise-refs", str(git_dir)], capture_output=True, check=True, env=GIT_ENV
    )
    return len(done.stdout)


class Pair:
    """node-a (source) and node-b (target) with RepositoryService stubs."""

    def __init__(
        self, a: NodeProcess, b: NodeProcess, channel_a: grpc.Channel, channel_b: grpc.Channel
    ) -> None:
        self.a, self.b = a, b
        self.stub_a = repository_pb2_grpc.RepositoryServiceStub(channel_a)
        self.stub_b = repository_pb2_grpc.RepositoryServiceStub(channel_b)

    def create(self, relative_path: str) -> tuple[shared_pb2.Repository, Path]:
        repo = shared_pb2.Repository(relative_path=relative_path)
        request = pb.CreateRepositoryRequest(repository=repo, default_branch="main")
        self.stub_a.CreateRepository(request, metadata=bearer_metadata(self.a.token), timeout=30)
        return repo, self.a.storage_path / relative_path

    def replicate(self, repo: shared_pb2.Repository) -> tuple[float, int]:
        node = shared_pb2.NodeAddress(name="node-a", address=self.a.address, token=self.a.token)
        request = pb.ReplicateRepositoryRequest(repository=repo, source=repo, source_node=node)
        start = time.monotonic()
        answer = self.stub_b.ReplicateRepository(request, metadata=bearer_metadata(self.b.token), timeout=600)
        return time.monotonic() - start, int(answer.bytes_fetched)


def measure(pair: Pair, name: str, branches: int, commits: int, rounds: int) -> None:
    repo, path = pair.create(f"bench/{name}.git")
    history(path, commits, branches)
    full, full_bytes = pair.replicate(repo)
    times, sizes = [], []
    for n in range(rounds):
        add_commit(path, n)
        elapsed, size = pair.replicate(repo)
        times.append(elapsed)
        sizes.append(size)
    print(
        f"  {branches + 1:>6} refs: full copy {full * 1000:.0f} ms ({full_bytes} B); one new commit: "
        f"median {statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}), "
        f"{statistics.median(sizes):.0f} B received; "
        f"the ref advertisement alone is {advertisement_bytes(path)} B"
    )
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--refs", type=int, default=10_000, help="branches in the big repository (default 10000)"
    )
    parser.add_argument("--commits", type=int, default=200, help="commits in each repository (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="incremental replications measured (default 5)")
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory(prefix="gitraft-replication-refs-") as tmp:
        work = Path(tmp)
        with (
            NodeProcess("node-a", work, secrets.token_hex(16), die_with_parent=True).start() as a,
            NodeProcess("node-b", work, secrets.token_hex(16), die_with_parent=True).start() as b,
            grpc.insecure_channel(a.address) as channel_a,
            grpc.insecure_channel(b.address) as channel_b,
        ):
            pair = Pair(a, b, channel_a, channel_b)
            print(f"incremental replication (ReplicateRepository node-a -> node-b), {args.rounds} rounds:")
            measure(pair, "few-refs", 10, args.commits, args.rounds)
            measure(pair, "many-refs", args.refs, args.commits, args.rounds)
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
