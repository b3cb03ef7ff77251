"""One storage node or one routing proxy as a child process on 127.0.0.1."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from prometheus_client.parser import text_string_to_metric_families

from cluster.config import ProxyConfig
from cluster.local.layout import ClusterLayout, ProxySpec, node_toml, write_private
from cluster.local.ports import free_port
from cluster.local.processes import ManagedProcess, wait_healthy
from common.config import to_toml


class _ChildProcess:
    """What NodeProcess and ProxyProcess share: one `python -m <module> --config F` child
    in a ManagedProcess (`process`, None until spawned), and a context manager that stops
    it on the way out."""

    process: ManagedProcess | None
    die_with_parent: bool

    def _spawn(self, name: str, module: str, config_path: Path, log_path: Path) -> None:
        self.process = ManagedProcess(
            name,
            [sys.executable, "-m", module, "--config", str(config_path)],
            log_path,
            die_with_parent=self.die_with_parent,
        )
        self.process.spawn()

    def _wait_healthy(self, address: str, timeout: float, failure: Callable[[Exception, str], str]) -> None:
        """Wait until `address` serves; on failure kill the process and raise RuntimeError
        with `failure(exception, log tail)`."""
        assert self.process is not None
        try:
            wait_healthy(address, timeout, self.process.proc)
        except Exception as exc:
            log = self.process.log_text()
            self.process.kill()
            raise RuntimeError(failure(exc, log)) from None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def log_text(self, tail: int = 4000) -> str:
        return self.process.log_text(tail) if self.process is not None else ""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class NodeProcess(_ChildProcess):
    """A storage node process on 127.0.0.1 (`python -m node --config ...`).

    Files under `workdir/<name>/`: node.toml, storage/, node.log. `metrics_port` 0 means
    no /metrics endpoint.
    """

    name: str
    workdir: Path
    token: str
    port: int = 0
    process: ManagedProcess | None = None
    metrics_port: int = 0
    log_level: str = "debug"
    die_with_parent: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_addr(self) -> str:
        return f"127.0.0.1:{self.metrics_port}" if self.metrics_port else ""

    @property
    def storage_path(self) -> Path:
        return self.workdir / self.name / "storage"

    @property
    def config_path(self) -> Path:
        return self.workdir / self.name / "node.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / self.name / "node.log"

    def write_config(self) -> None:
        if not self.port:
            self.port = free_port()
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            node_toml(
                self.name, self.address, self.storage_path, self.token, self.metrics_addr, self.log_level
            )
        )

    def spawn(self) -> None:
        """Start the process (config rewritten) without waiting for it to serve."""
        self.write_config()
        self._spawn(self.name, "node", self.config_path, self.log_path)

    def wait_serving(self, timeout: float = 20.0) -> None:
        """Wait until it serves; on failure kill it and raise with its log tail."""
        self._wait_healthy(
            self.address, timeout, lambda exc, log: f"node {self.name} did not start; log tail:\n{log}"
        )

    def start(self, timeout: float = 20.0) -> NodeProcess:
        """Start (or restart, same port and storage) and wait until it serves."""
        self.spawn()
        self.wait_serving(timeout)
        return self


@dataclass
class TunedNode(NodeProcess):
    """NodeProcess whose TOML gets `extra_toml` after the generated keys (tables such as
    `[[concurrency]]`, keys such as `replication_copy_limit`); top-level keys in it must
    come before any table."""

    extra_toml: str = ""

    def write_config(self) -> None:
        super().write_config()
        with self.config_path.open("a", encoding="utf-8") as config:
            config.write(self.extra_toml)


@dataclass
class ProxyProcess(_ChildProcess):
    """A routing proxy process (`python -m cluster.proxy --config ...`) of a layout.

    A proxy reports SERVING only once Raft has a leader, so start the proxies of a
    cluster together (`spawn` each, then `wait_serving` each). `config_hook`, when set,
    rewrites the layout's ProxyConfig before it is written (the chaos harness points
    node addresses and Raft peers at its fault-injecting relays).
    """

    spec: ProxySpec
    layout: ClusterLayout
    process: ManagedProcess | None = None
    die_with_parent: bool = False
    config_hook: Callable[[ProxyConfig], ProxyConfig] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        return self.spec.address

    @property
    def http_addr(self) -> str:
        return self.spec.http_addr

    @property
    def metrics_addr(self) -> str:
        return self.spec.metrics_addr

    @property
    def raft_addr(self) -> str:
        return self.spec.raft_addr

    @property
    def token(self) -> str:
        return self.layout.token

    @property
    def log_path(self) -> Path:
        return self.spec.log_path

    def spawn(self) -> None:
        """Start the process (config rewritten) without waiting for it to serve."""
        if self.config_hook is None:
            self.layout.write_proxy_config(self.spec)
        else:
            self.spec.dir.mkdir(parents=True, exist_ok=True)
            config = self.config_hook(self.layout.proxy_config(self.spec))
            write_private(self.spec.config_path, to_toml(config))
        self._spawn(self.name, "cluster.proxy", self.spec.config_path, self.spec.log_path)

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until it answers SERVING; on failure kill it and raise with its log tail."""
        self._wait_healthy(
            self.address,
            timeout,
            lambda exc, log: f"proxy {self.name} did not serve ({exc}); log tail:\n{log}",
        )

    def start(self, timeout: float = 60.0) -> ProxyProcess:
        self.spawn()
        self.wait_serving(timeout)
        return self

    def git_url(self, relative_path: str) -> str:
        """Clone/push URL through this proxy's gateway (token in the URL)."""
        return self.layout.git_url(self.name, relative_path)

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """Every sample on this proxy's /metrics as (name, labels, value)."""
        return scrape_metrics(self.metrics_addr)

    def read_counts(self) -> dict[str, float]:
        """`gitraft_proxy_reads_total` by storage label (accessors served per replica)."""
        counts: dict[str, float] = {}
        for name, labels, value in self.metrics():
            if name == "gitraft_proxy_reads_total":
                storage = labels.get("storage", "")
                counts[storage] = counts.get(storage, 0.0) + value
        return counts


def scrape_metrics(addr: str, timeout: float = 5.0) -> list[tuple[str, dict[str, str], float]]:
    """GET http://`addr`/metrics and parse it: (sample name, labels, value) triples."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
