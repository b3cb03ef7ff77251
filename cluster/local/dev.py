"""`gitraft dev`: a whole local cluster in the foreground (loopback only).

`run_dev` lays the cluster out under the data directory (`cluster.local.layout`: ports,
secrets and per-process TOML files, remembered across runs), starts every node, then
every proxy, waits until all serve, writes `<data-dir>/cluster.json` and prints a
ready clone URL. It then supervises: a child that exits is reported on stderr and left
down (the cluster is highly available: stopping a node by hand is a way to watch a
failover). SIGINT, SIGTERM or SIGHUP stop the cluster: proxies first, then nodes, each
SIGTERM'd, waited for, and SIGKILL'd after a grace period; cluster.json is removed.

No child outlives the launcher: children die with it even when it is SIGKILLed
(cluster.local.pdeathsig). Two launchers never share a data directory (an flock on
`<data-dir>/.lock`).

With `prometheus=True` (`gitraft dev --prometheus`) a real Prometheus (Debian's
`prometheus` binary, `cluster.local.prometheus`) scrapes every process every second with the
shipped alert rules; its URL is printed, its data lives under `<data-dir>/prometheus`,
and it stops with the cluster.

Exit codes: 0 after a clean stop, 1 when the cluster could not start (the reason and
the failing child's log tail on stderr), 2 on a data directory that cannot be used.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cluster.local.layout import CLUSTER_FILE, ClusterLayout, LayoutError, write_private
from cluster.local.ports import NoFreePortError, free_port
from cluster.local.processes import ManagedProcess
from cluster.local.prometheus import LocalPrometheus, PrometheusError

LOCK_FILE = ".lock"
# Seconds to wait for every child to serve, and for a child to stop after SIGTERM.
START_TIMEOUT = 90.0
STOP_GRACE = 10.0


class StartError(Exception):
    """The cluster did not come up; the message names the process and why."""


class DevCluster:
    """The children of one `gitraft dev` run. Not thread-safe: drive it from the main
    thread (children die with the thread that spawned them)."""

    def __init__(self, layout: ClusterLayout, stop: threading.Event, err: TextIO = sys.stderr) -> None:
        self.layout = layout
        self.stop_requested = stop
        self.err = err
        self.children: dict[str, ManagedProcess] = {}
        self.roles: dict[str, str] = {}
        self._reported: set[str] = set()

    def _child(self, name: str, role: str, argv: list[str], log_path: Path) -> ManagedProcess:
        child = ManagedProcess(name, argv, log_path, die_with_parent=True, cwd=self.layout.root)
        self.children[name] = child
        self.roles[name] = role
        return child

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start nodes, then proxies; return when all serve. StartError otherwise
        (children already started are left running: call `stop`)."""
        self.layout.write_configs()
        for node in self.layout.nodes:
            argv = [sys.executable, "-m", "node", "--config", str(node.config_path)]
            self._child(node.name, "node", argv, node.log_path).spawn()
        self._wait_serving([(n.name, n.address) for n in self.layout.nodes], timeout)
        for proxy in self.layout.proxies:
            argv = [sys.executable, "-m", "cluster.proxy", "--config", str(proxy.config_path)]
            self._child(proxy.name, "proxy", argv, proxy.log_path).spawn()
        self._wait_serving([(p.name, p.address) for p in self.layout.proxies], timeout)

    def _wait_serving(self, targets: list[tuple[str, str]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for name, address in targets:
            child = self.children[name]
            with grpc.insecure_channel(address) as channel:
                stub: Any = health_pb2_grpc.HealthStub(channel)
                while True:
                    if self.stop_requested.is_set():
                        raise StartError("interrupted while starting")
                    if not child.alive():
                        code = child.proc.returncode if child.proc else None
                        raise StartError(
                            f"{name} exited with code {code} while starting; log "
                            f"{str(child.log_path)!r} ends with:\n{child.log_text(2000)}"
                        )
                    if time.monotonic() > deadline:
                        raise StartError(
                            f"{name} not serving at {address} after {timeout:.0f}s; log "
                            f"{str(child.log_path)!r} ends with:\n{child.log_text(2000)}"
                        )
                    with contextlib.suppress(grpc.RpcError):
                        resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                        if resp.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    time.sleep(0.1)

    def pids(self) -> dict[str, int | None]:
        return {name: (c.pid if c.proc is not None else None) for name, c in self.children.items()}

    def report_exits(self) -> list[str]:
        """Names of children that exited since the last call (each reported once)."""
        gone = []
        for name, child in self.children.items():
            if name not in self._reported and child.proc is not None and not child.alive():
                self._reported.add(name)
                gone.append(name)
                self.err.write(
                    f"gitraft dev: {name} exited with code {child.proc.returncode}; log: {child.log_path}\n"
                )
                self.err.flush()
        return gone

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM every proxy and wait, then every node; SIGKILL what is left after
        `grace` seconds per group. Safe to call twice."""
        for role in ("proxy", "node"):
            group = [c for n, c in self.children.items() if self.roles[n] == role]
            for child in group:
                child.signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in group:
                if child.proc is not None and child.alive():
                    with contextlib.suppress(Exception):
                        child.proc.wait(max(0.0, deadline - time.monotonic()))
                child.kill()  # SIGKILLs a straggler's process group; closes the log


def write_cluster_file(layout: ClusterLayout, pids: dict[str, int | None]) -> Path:
    """Write `<root>/cluster.json` (mode 0600: it holds the token) atomically."""
    path = layout.root / CLUSTER_FILE
    write_private(path, json.dumps(layout.cluster_info(pids, os.getpid()), indent=2) + "\n")
    return path


def ready_message(layout: ClusterLayout, cluster_file: Path) -> str:
    """What `gitraft dev` prints once the cluster serves."""
    lines = [
        f"gitraft dev: {len(layout.proxies)} proxies and {len(layout.nodes)} nodes serving "
        f"(data in {layout.root})"
    ]
    for p in layout.proxies:
        addrs = f"grpc {p.address}  http {p.http_addr}  raft {p.raft_addr}  metrics {p.metrics_addr}"
        lines.append(f"  {p.name:<8} {addrs}")
    for n in layout.nodes:
        lines.append(f"  {n.name:<8} grpc {n.address}  metrics {n.metrics_addr}")
    url = layout.git_url(layout.proxies[0].name, "demo")
    lines += [
        f"  token    {layout.token}",
        f"  details  {cluster_file}",
        "",
        "push a new repository (a push creates it):",
        f"  git push {url} HEAD:refs/heads/main",
        "clone it through any proxy:",
        f"  git clone {url}",
        "",
        "Ctrl-C stops the cluster.",
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[IO[str]]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise LayoutError(f"{str(root)!r} is in use by gitraft dev (pid {holder})") from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield lock


@contextlib.contextmanager
def _stop_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM/SIGHUP set `stop` instead of interrupting whatever runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_dev(
    data_dir: Path,
    proxies: int = 3,
    nodes: int = 3,
    base_port: int | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    prometheus: bool = False,
) -> int:
    """Run the cluster until a stop signal; returns the exit code (module docstring)."""
    stop = threading.Event()
    with _stop_signals(stop):
        try:
            with _locked(Path(data_dir).resolve()) as _:
                layout, created = ClusterLayout.load_or_create(Path(data_dir), proxies, nodes, base_port)
                busy = layout.busy_ports()
                if busy:
                    err.write(f"gitraft dev: ports already in use: {busy} (another cluster running?)\n")
                    return 2
                return _run(layout, created, stop, out, err, prometheus)
        except LayoutError as exc:
            err.write(f"gitraft dev: {exc}\n")
            return 2


def _start_prometheus(layout: ClusterLayout) -> LocalPrometheus:
    """A Prometheus on a free loopback port scraping every process of `layout`."""
    try:
        port = free_port()
    except NoFreePortError as exc:
        raise PrometheusError(str(exc)) from None
    prom = LocalPrometheus(
        layout.root / "prometheus",
        proxies=[p.metrics_addr for p in layout.proxies],
        nodes=[n.metrics_addr for n in layout.nodes],
        port=port,
    )
    prom.start()
    try:
        prom.wait_ready()
    except PrometheusError:
        prom.stop()
        raise
    return prom


def _run(
    layout: ClusterLayout,
    created: bool,
    stop: threading.Event,
    out: TextIO,
    err: TextIO,
    prometheus: bool = False,
) -> int:
    cluster = DevCluster(layout, stop, err)
    prom: LocalPrometheus | None = None
    cluster_file = layout.root / CLUSTER_FILE
    with contextlib.suppress(FileNotFoundError):
        cluster_file.unlink()  # stale: left by a launcher that was killed
    word = "creating" if created else "restarting"
    err.write(f"gitraft dev: {word} the cluster in {layout.root} (logs in <data-dir>/<name>/*.log)\n")
    err.flush()
    try:
        try:
            cluster.start()
        except StartError as exc:
            if stop.is_set():
                err.write("gitraft dev: stopped while starting\n")
                return 0
            err.write(f"gitraft dev: the cluster did not start: {exc}\n")
            return 1
        write_cluster_file(layout, cluster.pids())
        if prometheus:
            try:
                prom = _start_prometheus(layout)
            except PrometheusError as exc:
                err.write(f"gitraft dev: prometheus did not start: {exc}\n")
                return 1
        out.write(ready_message(layout, cluster_file))
        if prom is not None:
            out.write(f"prometheus (alerts at {prom.url}/alerts): {prom.url}\n")
        out.flush()
        while not stop.wait(0.5):
            cluster.report_exits()
        err.write("gitraft dev: stopping\n")
        err.flush()
        return 0
    finally:
        if prom is not None:
            prom.stop()
        cluster.stop()
        with contextlib.suppress(FileNotFoundError):
            cluster_file.unlink()
        err.write("gitraft dev: every process stopped\n")
        err.flush()
