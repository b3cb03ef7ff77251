"""Process harness shared by integration tests, chaos tests and benchmarks.

Starts real processes on 127.0.0.1 and stops them for sure: every `*Process` is a
context manager, and `stop()` escalates SIGTERM -> SIGKILL. Logs go to files under the
work directory so a failing test can print them.

- `NodeProcess`: one storage node (`python -m node --config F`).
- `ProxyProcess`: one routing proxy (`python -m cluster.proxy --config F`).
- `LocalCluster`: N nodes + M proxies laid out by `cluster.local.layout.ClusterLayout` (the
  same code `gitraft dev` uses), with helpers to kill/restart processes by name, find the
  Raft leader, read a proxy's /metrics, call ClusterService, compare replica checksums
  and wait until a repository's replicas converge.
- `run_git`: the real git with no user or system config.

Every wait is bounded and raises TimeoutError (with what it saw last) when it expires.
"""

from __future__ import annotations

from cluster.local.ports import free_port, refused_address
from cluster.local.processes import REPO_ROOT, ManagedProcess, child_env, wait_healthy
from cluster.testing.git import GIT_ENV, commit_file, init_work_tree, remote_refs, run_git
from cluster.testing.local_cluster import (
    TEST_PROXY_SETTINGS,
    Converged,
    LocalCluster,
    local_cluster,
    token_channel,
)
from cluster.testing.processes import NodeProcess, ProxyProcess, TunedNode, scrape_metrics

__all__ = [
    "GIT_ENV",
    "REPO_ROOT",
    "TEST_PROXY_SETTINGS",
    "Converged",
    "LocalCluster",
    "ManagedProcess",
    "NodeProcess",
    "ProxyProcess",
    "TunedNode",
    "child_env",
    "commit_file",
    "free_port",
    "init_work_tree",
    "local_cluster",
    "refused_address",
    "remote_refs",
    "run_git",
    "scrape_metrics",
    "token_channel",
    "wait_healthy",
]
