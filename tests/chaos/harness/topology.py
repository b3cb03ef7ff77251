"""`ChaosCluster`: a LocalCluster whose every inter-process connection goes through the
fault-injecting relay (tests.chaos.harness.relay).

Each node's gRPC port and each proxy's Raft port gets a relay front. Proxies are
configured with the fronts' addresses: the nodes they call (and name as replication
sources to other nodes) and their Raft identity and peers (`self_addr` is the proxy's
front, `bind_addr` its real Raft port), so the relay sees proxy->node, node->node and
proxy<->proxy traffic and knows who talks to whom. Clients (git, gRPC) reach the
proxies directly; the checkers read nodes directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from cluster.config import NodeEntry, ProxyConfig
from cluster.testing import TEST_PROXY_SETTINGS, LocalCluster
from tests.chaos.harness.relay import RelayNet


class ChaosCluster:
    """N nodes + M proxies behind relays. `cluster` is the LocalCluster, `net` the
    RelayNet. Also tracks paused processes so `heal_all` can resume them."""

    def __init__(
        self,
        workdir: Path,
        proxies: int = 3,
        nodes: int = 3,
        seed: int = 0,
        proxy_settings: dict[str, Any] | None = None,
    ) -> None:
        self.net = RelayNet(self._owners, seed=seed)
        settings = {**TEST_PROXY_SETTINGS, **(proxy_settings or {})}
        # Raft commands may take longer than on a quiet machine before a proxy gives up
        # (a starting proxy exits when its first command does not commit in time), and
        # processes get longer to start: the relays and a loaded machine slow both.
        self.cluster = LocalCluster(
            workdir,
            proxies=proxies,
            nodes=nodes,
            proxy_settings=settings,
            raft_settings={"command_timeout": 10.0},
            start_timeout=180.0,
            proxy_config_hook=self._rewrite,
        )
        for spec in self.cluster.layout.nodes:
            self.net.add_front(spec.name, spec.grpc_port)
        for pspec in self.cluster.layout.proxies:
            self.net.add_front(pspec.name, pspec.raft_port)
        self.paused: set[str] = set()
        # Children die with the thread that spawned them (PR_SET_PDEATHSIG): restarts
        # run on this one thread, alive until close(), not on the nemesis thread.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")

    # -- wiring -----------------------------------------------------------------------

    def _owners(self) -> dict[int, str]:
        owners = {}
        for name in [*self.cluster.proxies, *self.cluster.nodes]:
            proc = self.cluster.process(name).process
            if proc is not None and proc.alive():
                owners[proc.pid] = name
        return owners

    def _rewrite(self, config: ProxyConfig) -> ProxyConfig:
        fronts = self.net.fronts
        proxies = [p.name for p in self.cluster.layout.proxies]
        raft = dict(config.raft)
        raft["bind_addr"] = raft["self_addr"]
        raft["self_addr"] = fronts[config.name].address
        raft["peers"] = [fronts[p].address for p in proxies if p != config.name]
        return dataclasses.replace(
            config,
            raft=raft,
            peer_names={fronts[p].address: p for p in proxies if p != config.name},
            nodes=[NodeEntry(n.name, fronts[n.name].address) for n in self.cluster.layout.nodes],
        )

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> ChaosCluster:
        """Start every process; return once every proxy sees every node healthy (a
        repository can only be placed on nodes the cluster knows healthy)."""
        for attempt in range(3):
            try:
                self.cluster.start()
                self.cluster.wait_health({n: True for n in self.cluster.nodes}, timeout=60)
                return self
            except (RuntimeError, TimeoutError):
                # A proxy exits when Raft loses its leader between its readiness barrier
                # and its first command (seen at load 40 on 2 cores): start again.
                self.cluster.close()
                if attempt == 2:
                    self.close()
                    raise
            except BaseException:
                self.close()
                raise
        return self

    def close(self) -> None:
        try:
            self.resume_all()
            self.cluster.close()
        finally:
            self._spawner.shutdown(wait=True)
            self.net.close()

    def __enter__(self) -> ChaosCluster:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- process faults -------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        return {name: pid for pid, name in self._owners().items()}

    def pause(self, name: str) -> None:
        """SIGSTOP the process group of `name` (its git children too)."""
        pid = self.pids().get(name)
        if pid is not None:
            os.killpg(pid, signal.SIGSTOP)
            self.paused.add(name)

    def resume(self, name: str) -> None:
        pid = self.pids().get(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGCONT)
        self.paused.discard(name)

    def resume_all(self) -> None:
        for name in list(self.paused):
            self.resume(name)

    def kill(self, name: str) -> None:
        self.paused.discard(name)
        self.cluster.kill(name)

    def restart(self, name: str) -> None:
        """Start a killed process again (same ports and data), from the spawner thread."""
        self._spawner.submit(self.cluster.start_process, name).result()

    def leader(self) -> str | None:
        """The Raft leader among live, unpaused proxies, or None."""
        try:
            return self.cluster.wait_for_leader(exclude=self.paused, timeout=5.0)
        except TimeoutError:
            return None

    def primary(self, relative_path: str) -> str | None:
        live = [p for p in self.cluster.alive_proxies(self.paused)]
        for proxy in live:
            try:
                repo = self.cluster.repository(relative_path, proxy=proxy, timeout=3.0)
            except Exception:
                continue
            return repo.primary if repo is not None else None
        return None
