"""A node's git children die with it (node.git `_dies_with_node`): a node SIGKILLed in
the middle of an OptimizeRepository left its `git gc` running, which the restarted
node's start then raced (it removes every temporary and lock it finds, node.janitor).

The gc's pack-objects is stopped with SIGSTOP so that the gc would wait for ever; the
node's process alone is then SIGKILLed (the harness's kill() takes the whole process
group, git included, which is why no chaos test saw this); its direct git child must
be gone. (Red before: 'the node's git
child outlived it'.)"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from common.auth import bearer_metadata
from gitraft.v1 import repository_pb2, repository_pb2_grpc, shared_pb2
from tests.integration.test_node_janitor import descendants_running, loose_repository
from tests.integration.tuned_node import TunedNode

POLL_LIMIT = 60.0  # a bound on polling, not a timing assertion


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie - dead, not yet reaped - does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def direct_git_children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and command.endswith(b"git"):
                children.append(int(entry.name))
    return children


def test_a_killed_nodes_git_children_die_with_it(tmp_path: Path) -> None:
    node = TunedNode("node-g", tmp_path, secrets.token_hex(16))
    loose_repository(node.storage_path / "r.git", commits=30)
    stopped: list[int] = []
    try:
        with node.start(), grpc.insecure_channel(node.address) as channel, ThreadPoolExecutor(1) as pool:
            assert node.process is not None
            node_pid = node.process.pid
            stub = repository_pb2_grpc.RepositoryServiceStub(channel)
            request = repository_pb2.OptimizeRepositoryRequest(
                repository=shared_pb2.Repository(relative_path="r.git")
            )
            answer = pool.submit(
                stub.OptimizeRepository, request, metadata=bearer_metadata(node.token), timeout=120
            )
            deadline = time.monotonic() + POLL_LIMIT
            while not (stopped := descendants_running(node_pid, b"pack-objects")):
                assert not answer.done() and time.monotonic() < deadline, "no pack-objects was seen"
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)  # the gc now waits for it, for ever
            gc = direct_git_children(node_pid)
            assert gc, "the node runs no git"
            os.kill(node_pid, signal.SIGKILL)  # the node alone, as the OOM killer or `kill -9 PID` does
            deadline = time.monotonic() + POLL_LIMIT
            while any(alive(pid) for pid in gc) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(alive(pid) for pid in gc), "the node's git child outlived it"
            answer.exception()  # the call failed with the node; nothing else to check
    finally:
        for pid in stopped:  # the orphaned grandchild: not the node's to kill
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
