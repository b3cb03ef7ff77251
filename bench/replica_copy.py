"""Replication of small repositories between two nodes: copied as files against fetched.

    .venv/bin/python -m bench replica_copy        (or: make bench)
    .venv/bin/python bench/replica_copy.py --repositories 600 --in-flight 4

Starts node-a and node-b twice: with the nodes' default `replication_copy_limit` (small
repositories are copied as files, node/replica_copy.py) and with it 0 (every
replication runs `git fetch`). Each time REPOSITORIES repositories exist on both nodes,
each given one small commit on node-a (pushed straight to its directory), then node-b
replicates them all from node-a, IN_FLIGHT calls at once. Printed per mode: the rate,
and the CPU time per replication of each node, the target's git children apart - what
a backlog drain (bench/scale_bench.py --drain-only) pays on the nodes per job.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench._machine import describe
from cluster.testing import GIT_ENV, TunedNode, run_git
from common.auth import bearer_metadata
from gitraft.v1 import repository_pb2 as pb
from gitraft.v1 import repository_pb2_grpc, shared_pb2

MODES = {"copy": "", "fetch": "replication_copy_limit = 0\n"}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, its reaped children's) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def run_mode(mode: str, repositories: int, in_flight: int, work: Path) -> str:
    seed = work / f"seed-{mode}"
    run_git("init", "-q", "-b", "main", str(seed), cwd=work)
    (seed / "README").write_text("a small repository\n")
    run_git("add", ".", cwd=seed)
    run_git("commit", "-q", "-m", "one", cwd=seed)
    root = work / mode
    with (
        TunedNode("node-a", root, secrets.token_hex(8), extra_toml=MODES[mode]).start() as a,
        TunedNode("node-b", root, secrets.token_hex(8), extra_toml=MODES[mode]).start() as b,
        grpc.insecure_channel(a.address) as channel_a,
        grpc.insecure_channel(b.address) as channel_b,
    ):
        stub_a = repository_pb2_grpc.RepositoryServiceStub(channel_a)
        stub_b = repository_pb2_grpc.RepositoryServiceStub(channel_b)
        repos = [shared_pb2.Repository(relative_path=f"small/{i}.git") for i in range(repositories)]
        for repo in repos:
            for stub, node in ((stub_a, a), (stub_b, b)):
                stub.CreateRepository(
                    pb.CreateRepositoryRequest(repository=repo), metadata=bearer_metadata(node.token)
                )
            subprocess.run(
                ["git", "push", "-q", str(a.storage_path / repo.relative_path), "main"],
                cwd=seed, check=True, env=GIT_ENV,
            )  # fmt: skip
        source = shared_pb2.NodeAddress(name="node-a", address=a.address, token=a.token)
        assert a.process is not None and a.process.proc is not None
        assert b.process is not None and b.process.proc is not None
        pid_a, pid_b = a.process.proc.pid, b.process.proc.pid

        def replicate(repo: shared_pb2.Repository) -> pb.ReplicateRepositoryResponse:
            request = pb.ReplicateRepositoryRequest(repository=repo, source=repo, source_node=source)
            answer: pb.ReplicateRepositoryResponse = stub_b.ReplicateRepository(
                request, metadata=bearer_metadata(b.token), timeout=120
            )
            return answer

        before_a, before_b, started = cpu_seconds(pid_a), cpu_seconds(pid_b), time.monotonic()
        with ThreadPoolExecutor(in_flight) as pool:
            answers = list(pool.map(replicate, repos))
        wall = time.monotonic() - started
        after_a, after_b = cpu_seconds(pid_a), cpu_seconds(pid_b)
    per = 1000 / repositories
    source = (sum(after_a) - sum(before_a)) * per
    target_own = (after_b[0] - before_b[0]) * per
    target_git = (after_b[1] - before_b[1]) * per
    copied = sum(answer.copied for answer in answers)
    return (
        f"{mode} | {repositories} | {copied} | {wall:.2f} | {repositories / wall:.1f} | {source:.2f} | "
        f"{target_own:.2f} | {target_git:.2f} | {source + target_own + target_git:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repositories", type=int, default=600)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    print(describe())
    print("replication of small repositories (one commit each), node-a -> node-b; CPU ms per replication")
    print("mode | repositories | copied | wall s | per s | source node | target node | its git | both nodes")
    with tempfile.TemporaryDirectory(prefix="gitraft-bench-copy-") as tmp:
        for mode in MODES:
            print(run_mode(mode, args.repositories, args.in_flight, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
