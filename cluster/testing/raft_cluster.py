"""Real metadata members as processes on 127.0.0.1, for integration tests and benchmarks.

    with MetadataCluster(tmp_path, size=3) as cluster:
        cluster.start()
        leader = cluster.wait_for_leader()
        leader.call("register_storage", name="a", address="x")
        leader.kill(); cluster.wait_for_leader(exclude=[leader])

Every member is a `ManagedProcess` (`python -m cluster.testing.raft_member`), stopped for
sure when the cluster's context exits. `call()` talks to the member's JSON control port
and raises the member's error type when it has one in `common.errors`.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from cluster.local.ports import free_port
from cluster.local.processes import ManagedProcess
from common import errors


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A member's dump_state without `meta.applied_index` (barriers move only that)."""
    out = dict(state)
    out["meta"] = [row for row in state.get("meta", []) if row[0] != "applied_index"]
    return out


class MemberError(Exception):
    """A control-port error without a matching `common.errors` class."""


class MemberProcess:
    def __init__(
        self, name: str, workdir: Path, raft_port: int, password: str, log_level: str = "info", **raft: Any
    ) -> None:
        self.name = name
        self.log_level = log_level
        self.workdir = workdir / name
        self.raft_addr = f"127.0.0.1:{raft_port}"
        self.control_addr = f"127.0.0.1:{free_port()}"
        self.password = password
        self.peers: list[str] = []
        self.raft_options = raft
        self.process: ManagedProcess | None = None
        self._sock: socket.socket | None = None
        self._file: Any = None

    def write_config(self) -> Path:
        path = self.workdir / "member.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            f"control_addr = {json.dumps(self.control_addr)}",
            f"log_level = {json.dumps(self.log_level)}",
        ]
        lines += ["", "[raft]"]
        options = {
            "self_addr": self.raft_addr,
            "peers": self.peers,
            "password": self.password,
            "data_dir": str(self.workdir / "raft"),
            **self.raft_options,
        }
        lines += [f"{k} = {json.dumps(v)}" for k, v in options.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 20.0) -> MemberProcess:
        """Start (or restart with the same ports and data) and wait for the control port."""
        config = self.write_config()
        self.process = ManagedProcess(
            self.name,
            [sys.executable, "-m", "cluster.testing.raft_member", "--config", str(config)],
            self.workdir / "member.log",
        )
        self.process.spawn()
        deadline = time.monotonic() + timeout
        while True:
            if not self.process.alive():
                raise RuntimeError(f"{self.name} exited; log tail:\n{self.process.log_text()}")
            try:
                self.call("status", timeout=2.0)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} did not start; log:\n{self.process.log_text()}"
                    ) from None
                time.sleep(0.05)

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self._disconnect()
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        self._disconnect()
        if self.process is not None:
            self.process.stop()

    def call(self, method: str, timeout: float = 30.0, **args: Any) -> Any:
        """One control request; raises the member's error (UnavailableError, ...)."""
        if self._sock is None:
            host, port = self.control_addr.rsplit(":", 1)
            self._sock = socket.create_connection((host, int(port)), timeout=timeout)
            self._file = self._sock.makefile("rwb")
        self._sock.settimeout(timeout)
        try:
            self._file.write(json.dumps({"method": method, "args": args}).encode() + b"\n")
            self._file.flush()
            line = self._file.readline()
        except OSError:
            self._disconnect()
            raise
        if not line:
            self._disconnect()
            raise ConnectionError(f"{self.name} closed the control connection")
        reply = json.loads(line)
        if "error" in reply:
            cls = getattr(errors, reply["error"], None)
            if isinstance(cls, type) and issubclass(cls, Exception):
                raise cls(reply["message"])
            raise MemberError(f"{reply['error']}: {reply['message']}")
        return reply["ok"]

    def status(self) -> dict[str, Any]:
        return dict(self.call("status", timeout=5.0))

    def _disconnect(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class MetadataCluster:
    """`size` members sharing one password, each with its own data directory."""

    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        password: str = "test-password",
        log_level: str = "info",
        **raft: Any,
    ) -> None:
        self.members = [
            MemberProcess(f"m{i + 1}", workdir, free_port(), password, log_level, **raft) for i in range(size)
        ]
        for m in self.members:
            m.peers = [o.raft_addr for o in self.members if o is not m]

    def start(self) -> MetadataCluster:
        for m in self.members:
            m.start()
        return self

    def alive(self) -> list[MemberProcess]:
        return [m for m in self.members if m.alive()]

    def wait_for_leader(self, exclude: Sequence[MemberProcess] = (), timeout: float = 20.0) -> MemberProcess:
        """The member that is leader (and has committed in its term), among live ones."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.alive():
                if m in exclude:
                    continue
                try:
                    if m.status()["role"] == "leader":
                        m.call("barrier", timeout=5.0)
                        return m
                except (OSError, errors.UnavailableError):
                    continue
            time.sleep(0.05)
        raise TimeoutError(f"no leader among {[m.name for m in self.alive()]} after {timeout}s")

    def wait_converged(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until every live member holds the same database; returns it.

        Each member first commits a barrier (so it applied everything committed before);
        the applied index itself is left out of the comparison, since the barriers are
        entries that only move it."""
        deadline = time.monotonic() + timeout
        states: list[Any] = []
        while time.monotonic() < deadline:
            try:
                for m in self.alive():
                    m.call("barrier", timeout=max(0.1, deadline - time.monotonic()))
                states = [comparable(m.call("dump_state")) for m in self.alive()]
            except (OSError, errors.UnavailableError):
                time.sleep(0.1)
                continue
            if all(s == states[0] for s in states):
                return dict(states[0])
            time.sleep(0.1)
        raise TimeoutError(f"members did not converge after {timeout}s")

    def close(self) -> None:
        for m in self.members:
            m.kill()

    def __enter__(self) -> MetadataCluster:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
