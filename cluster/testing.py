"""Process harness shared by integration tests, chaos tests and benchmarks.

Starts real processes on 127.0.0.1 and stops them for sure: every `*Process` is a
context manager, and `stop()` escalates SIGTERM -> SIGKILL. Logs go to files under the
work directory so a failing test can print them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    """Environment for child processes: our sources importable, gRPC quiet."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT), str(REPO_ROOT / "proto")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    return env


def wait_healthy(address: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until grpc.health.v1 at `address` answers SERVING, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before serving at {address}")
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                last = exc
            time.sleep(0.05)
    raise TimeoutError(f"{address} not healthy after {timeout}s: {last}")


@dataclass
class ManagedProcess:
    """A child process with a log file; stopped for sure by stop()/kill()/__exit__."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            cwd=REPO_ROOT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the process (and its process group: git children too)."""
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._reap()

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def log_text(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class NodeProcess:
    """A storage node process on 127.0.0.1 (`python -m node --config ...`)."""

    name: str
    workdir: Path
    token: str
    port: int = 0
    process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage_path(self) -> Path:
        return self.workdir / self.name / "storage"

    @property
    def config_path(self) -> Path:
        return self.workdir / self.name / "node.toml"

    def write_config(self) -> None:
        if not self.port:
            self.port = free_port()
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            f'name = "{self.name}"\n'
            f'listen_addr = "127.0.0.1:{self.port}"\n'
            f'storage_path = "{self.storage_path}"\n'
            f'token = "{self.token}"\n'
            'log_level = "debug"\n'
        )

    def start(self, timeout: float = 20.0) -> NodeProcess:
        """Start (or restart, same port and storage) and wait until it serves."""
        self.write_config()
        self.process = ManagedProcess(
            self.name,
            [sys.executable, "-m", "node", "--config", str(self.config_path)],
            self.workdir / self.name / "node.log",
        )
        self.process.spawn()
        try:
            wait_healthy(self.address, timeout, self.process.proc)
        except Exception:
            log = self.process.log_text()
            self.process.kill()
            raise RuntimeError(f"node {self.name} did not start; log tail:\n{log}") from None
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
