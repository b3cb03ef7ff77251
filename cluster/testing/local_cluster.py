"""`LocalCluster`: N storage nodes and M proxies on 127.0.0.1, and what tests ask of
them (kill/restart by name, Raft leader, ClusterService, replica checksums, waits)."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from cluster.config import ProxyConfig
from cluster.local.layout import ClusterLayout
from cluster.testing.processes import NodeProcess, ProxyProcess
from common.auth import bearer_metadata
from gitraft.v1 import cluster_pb2, cluster_pb2_grpc, repository_pb2, repository_pb2_grpc, shared_pb2

# Proxy settings LocalCluster uses unless told otherwise: frequent health checks, short
# leases and intent deadlines, so that faults are noticed and repaired within seconds.
# A killed node refuses connections and is seen down after two rounds (~0.4 s) whatever
# the timeout; the timeout only bounds a silent (paused, cut off) node. It is generous:
# a check shares the node's channel and event loop with the data, and on a loaded
# 2-core machine 0.5 s checks timed out on healthy nodes (reads refused meanwhile).
TEST_PROXY_SETTINGS: dict[str, Any] = {
    "health_interval": 0.2,
    "health_timeout": 1.5,
    "health_failure_threshold": 2,
    "lease_seconds": 5.0,
    "write_intent_timeout": 10.0,
    "shutdown_grace": 2.0,
}


@dataclass
class Converged:
    """What `wait_converged` saw: the repository and each replica's checksum."""

    repository: cluster_pb2.ClusterRepository
    checksums: dict[str, str]

    @property
    def generation(self) -> int:
        return int(self.repository.generation)


class LocalCluster:
    """N storage nodes and M proxies on 127.0.0.1, as `gitraft dev` lays them out.

        with LocalCluster(tmp_path, proxies=3, nodes=3) as cluster:
            url = cluster.git_url("proxy-1", "group/repo")
            ...
            cluster.kill("proxy-2"); cluster.wait_for_leader(exclude=["proxy-2"])
            cluster.wait_converged("group/repo")

    `__enter__` starts everything (nodes first, then all proxies together) and waits
    until every proxy serves; `__exit__` (and `close`) stops every process, also when
    start-up or the test failed. Children die with the test process if it is killed.
    `proxy_settings` / `raft_settings` override ProxyConfig / `[raft]` keys
    (TEST_PROXY_SETTINGS by default). `proxy_config_hook(config)` may rewrite each
    proxy's ProxyConfig before it is written (see ProxyProcess.config_hook).
    """

    def __init__(
        self,
        workdir: Path,
        proxies: int = 3,
        nodes: int = 3,
        *,
        base_port: int | None = None,
        replication_factor: int | None = None,
        proxy_settings: dict[str, Any] | None = None,
        raft_settings: dict[str, Any] | None = None,
        log_level: str = "info",
        start_timeout: float = 90.0,
        proxy_config_hook: Callable[[ProxyConfig], ProxyConfig] | None = None,
    ) -> None:
        self.layout = ClusterLayout.create(Path(workdir), proxies, nodes, base_port)
        settings = dict(TEST_PROXY_SETTINGS if proxy_settings is None else proxy_settings)
        settings.setdefault("replication_factor", replication_factor or nodes)
        self.layout.proxy_settings = settings
        self.layout.raft_settings = dict(raft_settings or {})
        self.layout.log_level = log_level
        self.layout.save()
        self.start_timeout = start_timeout
        self.nodes: dict[str, NodeProcess] = {
            spec.name: NodeProcess(
                spec.name,
                self.layout.root,
                self.layout.node_token,
                port=spec.grpc_port,
                metrics_port=spec.metrics_port,
                log_level=log_level,
                die_with_parent=True,
            )
            for spec in self.layout.nodes
        }
        self.proxies: dict[str, ProxyProcess] = {
            spec.name: ProxyProcess(spec, self.layout, die_with_parent=True, config_hook=proxy_config_hook)
            for spec in self.layout.proxies
        }
        self._channels: dict[str, grpc.Channel] = {}

    # -- life cycle ---------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The clients' token (gRPC bearer on proxies, HTTP basic password)."""
        return self.layout.token

    @property
    def node_token(self) -> str:
        return self.layout.node_token

    def start(self) -> LocalCluster:
        """Start every node, then every proxy; return once all proxies serve."""
        try:
            for node in self.nodes.values():
                node.spawn()
            for node in self.nodes.values():
                node.wait_serving(self.start_timeout)
            for proxy in self.proxies.values():
                proxy.spawn()
            for proxy in self.proxies.values():
                proxy.wait_serving(self.start_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every process (proxies first), close channels. Safe to call twice."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        errors: list[BaseException] = []
        groups: list[list[NodeProcess | ProxyProcess]] = [[*self.proxies.values()], [*self.nodes.values()]]
        for group in groups:
            for proc in group:  # SIGTERM the whole group at once, then wait for each
                if proc.process is not None:
                    proc.process.signal(signal.SIGTERM)
            for proc in group:
                try:
                    proc.stop()
                except BaseException as exc:  # keep stopping the others
                    errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def process(self, name: str) -> NodeProcess | ProxyProcess:
        if name in self.proxies:
            return self.proxies[name]
        if name in self.nodes:
            return self.nodes[name]
        raise KeyError(f"no process named {name!r}")

    def _all(self) -> list[NodeProcess | ProxyProcess]:
        """Every process, proxies first."""
        return [*self.proxies.values(), *self.nodes.values()]

    def kill(self, name: str) -> None:
        """SIGKILL a proxy or node by name."""
        self._drop_channel(name)
        self.process(name).kill()

    def stop(self, name: str) -> None:
        """SIGTERM (then SIGKILL) a proxy or node by name."""
        self._drop_channel(name)
        self.process(name).stop()

    def start_process(self, name: str, timeout: float | None = None) -> None:
        """(Re)start a proxy or node by name on its ports and data; wait until it serves."""
        proc = self.process(name)
        if proc.alive():
            raise RuntimeError(f"{name!r} is already running")
        proc.spawn()
        proc.wait_serving(timeout or self.start_timeout)

    def restart(self, name: str, kill: bool = False) -> None:
        """Stop (or SIGKILL) and start again a proxy or node by name."""
        if kill:
            self.kill(name)
        else:
            self.stop(name)
        self.start_process(name)

    def alive_proxies(self, exclude: Iterable[str] = ()) -> list[str]:
        skip = set(exclude)
        return [n for n, p in self.proxies.items() if n not in skip and p.alive()]

    def logs(self, tail: int = 3000) -> str:
        """Every process's log tail, for assertion messages."""
        parts = []
        for proc in self._all():
            parts.append(f"----- {proc.name} -----\n{proc.log_text(tail)}")
        return "\n".join(parts)

    # -- git --------------------------------------------------------------------------

    def git_url(self, proxy: str, relative_path: str) -> str:
        """`http://x:TOKEN@127.0.0.1:PORT/<relative_path>.git` through `proxy`."""
        return self.layout.git_url(proxy, relative_path)

    clone_url = git_url
    push_url = git_url

    # -- gRPC ---------------------------------------------------------------------------

    def channel(self, name: str) -> grpc.Channel:
        """A cached channel to a proxy's or node's gRPC address."""
        if name not in self._channels:
            self._channels[name] = grpc.insecure_channel(self.process(name).address)
        return self._channels[name]

    def _drop_channel(self, name: str) -> None:
        channel = self._channels.pop(name, None)
        if channel is not None:
            channel.close()

    def cluster_stub(self, proxy: str) -> Any:
        return cluster_pb2_grpc.ClusterServiceStub(self.channel(proxy))

    def metadata(self, name: str) -> tuple[tuple[str, str], ...]:
        """Call metadata for `name`: the client token for proxies, the node token for nodes."""
        return bearer_metadata(self.token if name in self.proxies else self.node_token)

    def cluster_status(self, proxy: str, timeout: float = 5.0) -> cluster_pb2.ClusterStatusResponse:
        """ClusterService.ClusterStatus as `proxy` answers it."""
        request = cluster_pb2.ClusterStatusRequest()
        result: cluster_pb2.ClusterStatusResponse = self.cluster_stub(proxy).ClusterStatus(
            request, metadata=self.metadata(proxy), timeout=timeout
        )
        return result

    def repository(
        self, relative_path: str, proxy: str | None = None, timeout: float = 5.0
    ) -> cluster_pb2.ClusterRepository | None:
        """The repository's metadata (ListClusterRepositories) through `proxy` (any live
        one by default); None when the cluster does not know it. `group/repo` also finds
        `group/repo.git`, as the git gateway names it."""
        proxy = proxy or self.alive_proxies()[0]
        request = cluster_pb2.ListClusterRepositoriesRequest(relative_path=relative_path)
        resp = self.cluster_stub(proxy).ListClusterRepositories(
            request, metadata=self.metadata(proxy), timeout=timeout
        )
        names = {relative_path, f"{relative_path}.git"}  # the gateway names repositories `<path>.git`
        for repo in resp.repositories:
            if repo.relative_path in names:
                return repo
        return None

    def jobs(self, proxy: str | None = None, states: Iterable[str] = ()) -> list[cluster_pb2.ReplicationJob]:
        """Replication jobs (ListReplicationJobs) through `proxy`, optionally by state."""
        proxy = proxy or self.alive_proxies()[0]
        request = cluster_pb2.ListReplicationJobsRequest(states=list(states))
        resp = self.cluster_stub(proxy).ListReplicationJobs(
            request, metadata=self.metadata(proxy), timeout=5.0
        )
        return list(resp.jobs)

    def replica_checksum(self, storage: str, replica_path: str, timeout: float = 10.0) -> str:
        """RepositoryChecksum asked of node `storage` directly, for its on-disk replica."""
        stub = repository_pb2_grpc.RepositoryServiceStub(self.channel(storage))
        repo = shared_pb2.Repository(storage_name=storage, relative_path=replica_path)
        resp = stub.RepositoryChecksum(
            repository_pb2.RepositoryChecksumRequest(repository=repo),
            metadata=self.metadata(storage),
            timeout=timeout,
        )
        return str(resp.checksum)

    def replica_checksums(self, relative_path: str, exclude: Iterable[str] = ()) -> dict[str, str]:
        """{storage: checksum} of every assigned replica (nodes in `exclude` skipped)."""
        repo = self.repository(relative_path)
        if repo is None:
            raise LookupError(f"the cluster does not know {relative_path!r}")
        skip = set(exclude)
        return {
            r.storage: self.replica_checksum(r.storage, repo.replica_path)
            for r in repo.replicas
            if r.storage not in skip
        }

    # -- waits --------------------------------------------------------------------------

    def wait_for_leader(self, exclude: Iterable[str] = (), timeout: float = 30.0) -> str:
        """The name of the proxy that is Raft leader, among live proxies not in
        `exclude`, as that proxy itself reports (ClusterStatus); TimeoutError if none."""
        skip = set(exclude)
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            for name in self.alive_proxies(skip):
                try:
                    status = self.cluster_status(name, timeout=2.0)
                except grpc.RpcError as exc:
                    seen[name] = f"error {exc.code().name}"
                    continue
                me = [p for p in status.proxies if p.name == name]
                seen[name] = me[0].raft_role if me else "absent from its own status"
                if me and me[0].raft_role == "leader":
                    return name
            time.sleep(0.1)
        raise TimeoutError(f"no Raft leader among live proxies (excluding {sorted(skip)}): {seen}")

    def wait_converged(
        self, relative_path: str, timeout: float = 60.0, exclude: Iterable[str] = ()
    ) -> Converged:
        """Poll until every assigned replica of `relative_path` (nodes in `exclude`
        skipped) has the repository's generation and all their checksums are equal.

        Returns what it saw; TimeoutError with the last observation otherwise.
        """
        skip = set(exclude)
        deadline = time.monotonic() + timeout
        last = "nothing yet"
        while time.monotonic() < deadline:
            try:
                repo = self.repository(relative_path)
                if repo is None:
                    last = f"unknown repository {relative_path!r}"
                else:
                    replicas = [r for r in repo.replicas if r.storage not in skip]
                    generations = {r.storage: int(r.generation) for r in replicas}
                    checksums = {
                        r.storage: self.replica_checksum(r.storage, repo.replica_path) for r in replicas
                    }
                    last = f"generation {repo.generation}, replicas {generations}, checksums {checksums}"
                    if (
                        replicas
                        and all(g == repo.generation for g in generations.values())
                        and len(set(checksums.values())) == 1
                    ):
                        return Converged(repo, checksums)
            except (grpc.RpcError, IndexError) as exc:
                last = f"error: {exc}"
            time.sleep(0.2)
        raise TimeoutError(f"{relative_path!r} did not converge in {timeout}s: {last}")

    def wait_health(self, expected: dict[str, bool], timeout: float = 30.0) -> None:
        """Wait until every live proxy reports each node in `expected` with that cluster
        health (ClusterStatus: the majority view), e.g. {"node-b": False}."""

        def seen() -> bool:
            for proxy in self.alive_proxies():
                nodes = {n.storage: n.healthy for n in self.cluster_status(proxy).nodes}
                if any(nodes.get(name) != want for name, want in expected.items()):
                    return False
            return True

        self.wait_until(seen, timeout, what=f"every proxy sees {expected}")

    def wait_until(self, predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
        """Poll `predicate()` until it returns something truthy (returned), bounded."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except (grpc.RpcError, OSError) as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.1)
        raise TimeoutError(f"{what} not reached in {timeout}s; last: {last!r}")

    def read_counts(self) -> dict[str, float]:
        """`gitraft_proxy_reads_total` by storage, summed over every live proxy."""
        total: dict[str, float] = {}
        for name in self.alive_proxies():
            for storage, count in self.proxies[name].read_counts().items():
                total[storage] = total.get(storage, 0.0) + count
        return total


class _TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the bearer token to every call made on a channel."""

    def __init__(self, token: str) -> None:
        self._metadata = bearer_metadata(token)

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self._metadata))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def token_channel(address: str, token: str) -> grpc.Channel:
    """A channel to `address` whose every call carries `token` (close it when done)."""
    return grpc.intercept_channel(grpc.insecure_channel(address), _TokenInterceptor(token))


@contextlib.contextmanager
def local_cluster(workdir: Path, **kwargs: Any) -> Iterator[LocalCluster]:
    """`with local_cluster(tmp_path, proxies=3) as cluster:` - LocalCluster as a
    context manager function (stops everything on the way out)."""
    cluster = LocalCluster(workdir, **kwargs)
    with cluster:
        yield cluster
