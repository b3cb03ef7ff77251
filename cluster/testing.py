"""Process harness shared by integration tests, chaos tests and benchmarks.

Starts real processes on 127.0.0.1 and stops them for sure: every `*Process` is a
context manager, and `stop()` escalates SIGTERM -> SIGKILL. Logs go to files under the
work directory so a failing test can print them.

- `NodeProcess`: one storage node (`python -m node --config F`).
- `ProxyProcess`: one routing proxy (`python -m cluster.proxy --config F`).
- `LocalCluster`: N nodes + M proxies laid out by `cluster.layout.ClusterLayout` (the
  same code `gitraft dev` uses), with helpers to kill/restart processes by name, find the
  Raft leader, read a proxy's /metrics, call ClusterService, compare replica checksums
  and wait until a repository's replicas converge.
- `run_git`: the real git with no user or system config.

Every wait is bounded and raises TimeoutError (with what it saw last) when it expires.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from cluster.layout import ClusterLayout, ProxySpec, free_port, node_toml
from common.auth import bearer_metadata
from gitraft.v1 import cluster_pb2, cluster_pb2_grpc, repository_pb2, repository_pb2_grpc, shared_pb2

REPO_ROOT = Path(__file__).resolve().parent.parent

# git with no user/system config, no prompts, fixed identities.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "gitraft tests",
    "GIT_AUTHOR_EMAIL": "tests@gitraft.invalid",
    "GIT_COMMITTER_NAME": "gitraft tests",
    "GIT_COMMITTER_EMAIL": "tests@gitraft.invalid",
}

# Proxy settings LocalCluster uses unless told otherwise: fast health checks, short
# leases and intent deadlines, so that faults are noticed and repaired within seconds.
TEST_PROXY_SETTINGS: dict[str, Any] = {
    "health_interval": 0.2,
    "health_timeout": 0.5,
    "lease_seconds": 5.0,
    "write_intent_timeout": 10.0,
    "shutdown_grace": 2.0,
}


def child_env() -> dict[str, str]:
    """Environment for child processes: our sources importable, gRPC quiet."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT)]
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
    """A child process with a log file; stopped for sure by stop()/kill()/__exit__.

    The child runs in its own session (so kill() takes its git children too). With
    `die_with_parent` it also gets SIGTERM when the spawning thread dies, even by SIGKILL
    (see cluster.pdeathsig): spawn such processes from the main thread.
    """

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    die_with_parent: bool = False
    cwd: Path = REPO_ROOT

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        argv = self.argv
        if self.die_with_parent:
            guard = [sys.executable, "-m", "cluster.pdeathsig", str(os.getpid()), str(int(signal.SIGTERM))]
            argv = [*guard, "--", *argv]
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            cwd=self.cwd,
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
        if self.proc is not None:
            # Stragglers of the session (git children of a killed process).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class NodeProcess:
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
        self.process = ManagedProcess(
            self.name,
            [sys.executable, "-m", "node", "--config", str(self.config_path)],
            self.log_path,
            die_with_parent=self.die_with_parent,
        )
        self.process.spawn()

    def wait_serving(self, timeout: float = 20.0) -> None:
        """Wait until it serves; on failure kill it and raise with its log tail."""
        assert self.process is not None
        try:
            wait_healthy(self.address, timeout, self.process.proc)
        except Exception:
            log = self.process.log_text()
            self.process.kill()
            raise RuntimeError(f"node {self.name} did not start; log tail:\n{log}") from None

    def start(self, timeout: float = 20.0) -> NodeProcess:
        """Start (or restart, same port and storage) and wait until it serves."""
        self.spawn()
        self.wait_serving(timeout)
        return self

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

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class ProxyProcess:
    """A routing proxy process (`python -m cluster.proxy --config ...`) of a layout.

    A proxy reports SERVING only once Raft has a leader, so start the proxies of a
    cluster together (`spawn` each, then `wait_serving` each).
    """

    spec: ProxySpec
    layout: ClusterLayout
    process: ManagedProcess | None = None
    die_with_parent: bool = False

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
        self.layout.write_proxy_config(self.spec)
        self.process = ManagedProcess(
            self.name,
            [sys.executable, "-m", "cluster.proxy", "--config", str(self.spec.config_path)],
            self.spec.log_path,
            die_with_parent=self.die_with_parent,
        )
        self.process.spawn()

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until it answers SERVING; on failure kill it and raise with its log tail."""
        assert self.process is not None
        try:
            wait_healthy(self.address, timeout, self.process.proc)
        except Exception as exc:
            log = self.process.log_text()
            self.process.kill()
            raise RuntimeError(f"proxy {self.name} did not serve ({exc}); log tail:\n{log}") from None

    def start(self, timeout: float = 60.0) -> ProxyProcess:
        self.spawn()
        self.wait_serving(timeout)
        return self

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

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def scrape_metrics(addr: str, timeout: float = 5.0) -> list[tuple[str, dict[str, str], float]]:
    """GET http://`addr`/metrics and parse it: (sample name, labels, value) triples."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def run_git(
    *args: str,
    cwd: Path,
    check: bool = True,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real git (GIT_ENV applied). With `check`, raise RuntimeError with git's
    stderr on a non-zero exit; TimeoutExpired after `timeout` seconds (git is killed)."""
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    done = subprocess.run(
        ["git", *args], check=False, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def init_work_tree(path: Path, branch: str = "main") -> Path:
    """An empty non-bare repository at `path` on `branch`."""
    path.mkdir(parents=True, exist_ok=True)
    run_git("init", "-q", "-b", branch, cwd=path)
    return path


def commit_file(work: Path, name: str, content: str | bytes, message: str = "") -> str:
    """Write `name` in the work tree, commit it, return the new commit id."""
    target = work / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    run_git("add", name, cwd=work)
    run_git("commit", "-q", "-m", message or f"change {name}", cwd=work)
    return run_git("rev-parse", "HEAD", cwd=work).stdout.strip()


def remote_refs(url: str, cwd: Path, timeout: float = 60.0) -> dict[str, str]:
    """`git ls-remote url` as {ref: oid} (HEAD included when the remote shows it)."""
    out = run_git("ls-remote", url, cwd=cwd, timeout=timeout).stdout
    refs: dict[str, str] = {}
    for line in out.splitlines():
        oid, _, ref = line.partition("\t")
        refs[ref] = oid
    return refs


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
    (TEST_PROXY_SETTINGS by default).
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
            spec.name: ProxyProcess(spec, self.layout, die_with_parent=True) for spec in self.layout.proxies
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
            if r.assigned and r.storage not in skip
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
                    replicas = [r for r in repo.replicas if r.assigned and r.storage not in skip]
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


@contextlib.contextmanager
def local_cluster(workdir: Path, **kwargs: Any) -> Iterator[LocalCluster]:
    """`with local_cluster(tmp_path, proxies=3) as cluster:` - LocalCluster as a
    context manager function (stops everything on the way out)."""
    cluster = LocalCluster(workdir, **kwargs)
    with cluster:
        yield cluster
