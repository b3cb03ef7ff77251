"""`gitraft dev` as a user runs it: a subprocess on a temporary data directory.

It writes cluster.json and prints a clone URL that works for push and clone; SIGTERM
stops every child; started again on the same directory the repository is still there;
SIGKILLed, its children still go away (they die with it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.local.layout import PORTS_PER_PROCESS
from cluster.local.ports import free_port_block
from cluster.testing import child_env, commit_file, init_work_tree, remote_refs, run_git

START_TIMEOUT = 120.0


def free_base_port(processes: int = 6) -> int:
    """A base port below Linux's ephemeral range whose whole block is free now."""
    return free_port_block(PORTS_PER_PROCESS * processes)[0]


class Launcher:
    """A `gitraft dev` subprocess; stdout captured to a file, killed for sure on close."""

    def __init__(self, data_dir: Path, base_port: int, log: Path) -> None:
        self.data_dir = data_dir
        self.stdout_path = log.with_suffix(".out")
        self.stderr_path = log.with_suffix(".err")
        argv = [sys.executable, "-m", "cluster.cli.main", "dev", "--data-dir", str(data_dir)]
        argv += ["--base-port", str(base_port)]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=err, env=child_env(), start_new_session=True
            )

    def wait_ready(self) -> tuple[dict[str, Any], str]:
        """cluster.json written by this launcher, and the clone URL it printed."""
        deadline = time.monotonic() + START_TIMEOUT
        path = self.data_dir / "cluster.json"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"gitraft dev exited {self.proc.returncode}: {self.output()}"
            if path.exists():
                info = json.loads(path.read_text())
                match = re.search(r"git clone (\S+)", self.stdout_path.read_text())
                if info["launcher_pid"] == self.proc.pid and match:
                    return info, match.group(1)
            time.sleep(0.1)
        raise TimeoutError(f"gitraft dev not ready: {self.output()}")

    def output(self) -> str:
        return f"stdout:\n{self.stdout_path.read_text()}\nstderr:\n{self.stderr_path.read_text()[-3000:]}"

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def launchers(tmp_path: Path) -> Iterator[list[Launcher]]:
    started: list[Launcher] = []
    yield started
    for launcher in started:
        launcher.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its new parent) is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_all_gone(pids: list[int], timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def child_pids(info: dict[str, Any]) -> list[int]:
    return [int(p["pid"]) for p in info["processes"]]


def test_gitraft_dev_serves_stops_and_comes_back(
    tmp_path: Path, launchers: list[Launcher], git_home: Path
) -> None:
    data_dir = tmp_path / "data"
    base = free_base_port()
    first = Launcher(data_dir, base, tmp_path / "first")
    launchers.append(first)
    info, url = first.wait_ready()

    assert url.startswith(f"http://x:{info['token']}@127.0.0.1:{base + 1}/")
    assert {p["role"] for p in info["processes"]} == {"proxy", "node"}
    assert len(info["processes"]) == 6
    for p in info["processes"]:
        assert set(p) >= {"name", "role", "pid", "grpc_addr", "http_addr", "raft_addr", "metrics_addr"}
        assert p["grpc_addr"].startswith("127.0.0.1:") and pid_alive(p["pid"])
        assert Path(p["data_path"]).is_relative_to(data_dir.resolve())
        assert Path(p["log_path"]).exists()
    assert (data_dir / "cluster.json").stat().st_mode & 0o077 == 0

    work = init_work_tree(tmp_path / "work")
    oid = commit_file(work, "hello.txt", "hello from gitraft dev\n", "first")
    run_git("push", "-q", url, "HEAD:refs/heads/main", cwd=work)
    run_git("clone", "-q", url, str(tmp_path / "clone"), cwd=tmp_path)
    assert (tmp_path / "clone" / "hello.txt").read_text() == "hello from gitraft dev\n"

    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(60) == 0, first.output()
    assert wait_all_gone(child_pids(info), timeout=5) == [], "children outlived a clean stop"
    assert not (data_dir / "cluster.json").exists()

    second = Launcher(data_dir, base, tmp_path / "second")
    launchers.append(second)
    info2, url2 = second.wait_ready()
    assert url2 == url, "the same token and ports after a restart"
    assert remote_refs(url2, tmp_path)["refs/heads/main"] == oid
    run_git("clone", "-q", url2, str(tmp_path / "clone2"), cwd=tmp_path)
    assert (tmp_path / "clone2" / "hello.txt").read_text() == "hello from gitraft dev\n"

    # SIGKILL: the launcher cannot clean up, its children die with it all the same.
    os.kill(second.proc.pid, signal.SIGKILL)
    second.proc.wait(30)
    assert wait_all_gone(child_pids(info2)) == [], "children outlived a SIGKILLed launcher"


def test_gitraft_dev_refuses_a_data_dir_of_another_shape(tmp_path: Path) -> None:
    from cluster.local.layout import ClusterLayout

    ClusterLayout.load_or_create(tmp_path / "data", proxies=3, nodes=3)
    argv = [sys.executable, "-m", "cluster.cli.main", "dev", "--data-dir", str(tmp_path / "data")]
    done = subprocess.run(
        [*argv, "--nodes", "2"], env=child_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "3 proxies and 3 nodes" in done.stderr
