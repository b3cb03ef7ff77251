"""Where a local cluster's processes listen and keep their files: one place for both
`gitraft dev` and the test harness (`cluster.testing.LocalCluster`).

A layout is decided once and remembered in `<root>/layout.json` (mode 0600: it holds the
client token, the node token and the Raft password), so a cluster started again on the
same directory comes back on the same ports with the same secrets, hence with its
repositories and its Raft log.

Ports: with a base port P the layout is deterministic - process k (proxies first, then
nodes, in name order) owns the four ports P+4k .. P+4k+3:

    proxy: gRPC = +0, git HTTP = +1, Raft = +2, metrics = +3
    node:  gRPC = +0, metrics = +1      (+2, +3 unused)

Without a base port the ports are a block of consecutive ports that were all free at
creation, below the ephemeral range (so a restarted process finds its port again), laid
out the same way.

Files, per process, under `<root>/<name>/`:

    node:  node.toml, storage/ (bare repositories), node.log
    proxy: proxy.toml, data/ (the proxy's data_dir; Raft journal, snapshots and SQLite
           in data/raft/), proxy.log

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from cluster.config import NodeEntry, ProxyConfig
from cluster.local.ports import HOST, NoFreePortError, free_port_block, port_is_free
from common.config import to_toml
from node.config import NodeConfig

LAYOUT_FILE = "layout.json"
CLUSTER_FILE = "cluster.json"
LAYOUT_VERSION = 1
PORTS_PER_PROCESS = 4
MAX_NODES = 26


class LayoutError(Exception):
    """A layout that cannot be created or does not match what was asked; says why."""


def node_names(count: int) -> list[str]:
    """`node-a`, `node-b`, ... (at most MAX_NODES)."""
    if not 1 <= count <= MAX_NODES:
        raise LayoutError(f"node count must be between 1 and {MAX_NODES}, got {count!r}")
    return [f"node-{c}" for c in string.ascii_lowercase[:count]]


def proxy_names(count: int) -> list[str]:
    """`proxy-1`, `proxy-2`, ..."""
    if count < 1:
        raise LayoutError(f"proxy count must be at least 1, got {count!r}")
    return [f"proxy-{i}" for i in range(1, count + 1)]


def node_toml(
    name: str,
    listen_addr: str,
    storage_path: Path,
    token: str,
    metrics_addr: str = "",
    log_level: str = "info",
) -> str:
    """A node's TOML config (every node.config.NodeConfig key, the others at defaults)."""
    return to_toml(
        NodeConfig(
            name=name,
            listen_addr=listen_addr,
            storage_path=storage_path,
            token=token,
            metrics_addr=metrics_addr,
            log_level=log_level,
        ),
        omit=("tokens",),  # `token` alone; `tokens` is derived from it at load
        skip_defaults=True,  # callers (tests) may append their own settings
    )


@dataclass(kw_only=True)
class ProcessSpec:
    """What every process of the layout has: a name, a folder, gRPC and metrics ports.

    Its own ports are saved in layout.json by `port_fields()` and read back by name."""

    ROLE: ClassVar[str]
    name: str
    root: Path
    grpc_port: int
    metrics_port: int

    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def address(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_addr(self) -> str:
        return f"{HOST}:{self.metrics_port}"

    @property
    def config_path(self) -> Path:
        return self.dir / f"{self.ROLE}.toml"

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.ROLE}.log"

    def port_fields(self) -> dict[str, int]:
        """Port name -> number, in layout order (what layout.json stores)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.endswith("_port")}

    def ports(self) -> list[int]:
        return list(self.port_fields().values())


@dataclass(kw_only=True)
class NodeSpec(ProcessSpec):
    """One storage node of the layout."""

    ROLE: ClassVar[str] = "node"

    @property
    def storage_path(self) -> Path:
        return self.dir / "storage"


@dataclass(kw_only=True)
class ProxySpec(ProcessSpec):
    """One routing proxy of the layout."""

    ROLE: ClassVar[str] = "proxy"
    http_port: int
    raft_port: int

    @property
    def http_addr(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def raft_addr(self) -> str:
        return f"{HOST}:{self.raft_port}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"


@dataclass
class ClusterLayout:
    """Ports, paths and secrets of a local cluster rooted at `root`.

    `proxy_settings` are extra ProxyConfig keys (e.g. faster health checks for tests) and
    `raft_settings` extra `[raft]` keys; they are applied when configs are written and
    are not persisted. Build one with `create`, `load` or `load_or_create`.
    """

    root: Path
    token: str
    node_token: str
    raft_password: str
    proxies: list[ProxySpec]
    nodes: list[NodeSpec]
    base_port: int | None = None
    proxy_settings: dict[str, Any] = field(default_factory=dict)
    raft_settings: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"

    # -- construction -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: Path,
        proxies: int = 3,
        nodes: int = 3,
        base_port: int | None = None,
        token: str | None = None,
    ) -> ClusterLayout:
        """A fresh layout (not yet saved). Ports from `base_port`, else free ones."""
        root = Path(root).resolve()
        pnames, nnames = proxy_names(proxies), node_names(nodes)
        total = PORTS_PER_PROCESS * (len(pnames) + len(nnames))
        if base_port is not None:
            if not 1024 <= base_port <= 65535 - total:
                raise LayoutError(f"base port {base_port!r} leaves no room for {total} ports below 65536")
            ports = list(range(base_port, base_port + total))
        else:
            try:
                ports = free_port_block(total)
            except NoFreePortError as exc:
                raise LayoutError(str(exc)) from None
        it = iter(ports)

        def take(n: int) -> list[int]:
            return [next(it) for _ in range(n)]

        proxy_specs = []
        for name in pnames:
            grpc_port, http_port, raft_port, metrics_port = take(PORTS_PER_PROCESS)
            proxy_specs.append(
                ProxySpec(
                    name=name,
                    root=root,
                    grpc_port=grpc_port,
                    metrics_port=metrics_port,
                    http_port=http_port,
                    raft_port=raft_port,
                )
            )
        node_specs = []
        for name in nnames:
            grpc_port, metrics_port, *_ = take(PORTS_PER_PROCESS)
            node_specs.append(NodeSpec(name=name, root=root, grpc_port=grpc_port, metrics_port=metrics_port))
        return cls(
            root=root,
            token=token or secrets.token_hex(16),
            node_token=secrets.token_hex(16),
            raft_password=secrets.token_hex(16),
            proxies=proxy_specs,
            nodes=node_specs,
            base_port=base_port,
        )

    @classmethod
    def load(cls, root: Path) -> ClusterLayout:
        """The layout saved under `root`; LayoutError when missing or unreadable."""
        root = Path(root).resolve()
        path = root / LAYOUT_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != LAYOUT_VERSION:
                raise LayoutError(f"{str(path)!r}: unsupported layout version {raw.get('version')!r}")
            return cls(
                root=root,
                token=str(raw["token"]),
                node_token=str(raw["node_token"]),
                raft_password=str(raw["raft_password"]),
                base_port=raw.get("base_port"),
                proxies=[ProxySpec(root=root, **p) for p in raw["proxies"]],
                nodes=[NodeSpec(root=root, **n) for n in raw["nodes"]],
            )
        except FileNotFoundError as exc:
            raise LayoutError(f"no layout at {str(path)!r}") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LayoutError(f"unreadable layout {str(path)!r}: {exc}") from exc

    @classmethod
    def load_or_create(
        cls, root: Path, proxies: int = 3, nodes: int = 3, base_port: int | None = None
    ) -> tuple[ClusterLayout, bool]:
        """The saved layout under `root`, or a new one saved there; (layout, created).

        A saved layout must match what is asked: LayoutError when the counts differ, or
        when `base_port` is given and differs from the saved one (changing the ports of
        a cluster with a Raft log is not supported). Without `base_port` any saved layout
        of the right size is reused.
        """
        root = Path(root).resolve()
        if (root / LAYOUT_FILE).exists():
            layout = cls.load(root)
            if (len(layout.proxies), len(layout.nodes)) != (proxies, nodes):
                raise LayoutError(
                    f"{str(root)!r} holds a cluster of {len(layout.proxies)} proxies and "
                    f"{len(layout.nodes)} nodes, not {proxies} and {nodes}: use another --data-dir"
                )
            if base_port is not None and layout.base_port != base_port:
                raise LayoutError(
                    f"{str(root)!r} was laid out with base port {layout.base_port!r}, not {base_port!r}"
                )
            return layout, False
        layout = cls.create(root, proxies, nodes, base_port)
        layout.save()
        return layout, True

    def save(self) -> None:
        """Write `<root>/layout.json` atomically, readable by the owner only."""
        self.root.mkdir(parents=True, exist_ok=True)
        data = {
            "version": LAYOUT_VERSION,
            "token": self.token,
            "node_token": self.node_token,
            "raft_password": self.raft_password,
            "base_port": self.base_port,
            "proxies": [{"name": p.name, **p.port_fields()} for p in self.proxies],
            "nodes": [{"name": n.name, **n.port_fields()} for n in self.nodes],
        }
        write_private(self.root / LAYOUT_FILE, json.dumps(data, indent=2) + "\n")

    # -- lookups ---------------------------------------------------------------------

    def proxy(self, name: str) -> ProxySpec:
        for p in self.proxies:
            if p.name == name:
                return p
        raise KeyError(f"no proxy named {name!r}")

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}")

    def busy_ports(self) -> list[int]:
        """Ports of the layout that something else holds right now."""
        specs: list[ProxySpec | NodeSpec] = [*self.proxies, *self.nodes]
        ports = [port for spec in specs for port in spec.ports()]
        return [port for port in ports if not port_is_free(port)]

    # -- configs ---------------------------------------------------------------------

    def node_config_text(self, spec: NodeSpec) -> str:
        return node_toml(
            spec.name, spec.address, spec.storage_path, self.node_token, spec.metrics_addr, self.log_level
        )

    def proxy_config(self, spec: ProxySpec) -> ProxyConfig:
        """The ProxyConfig of `spec`: every node, every other proxy as a Raft peer."""
        raft: dict[str, Any] = {
            "self_addr": spec.raft_addr,
            "peers": [p.raft_addr for p in self.proxies if p.name != spec.name],
            "password": self.raft_password,
            "data_dir": str(spec.data_dir / "raft"),
            **self.raft_settings,
        }
        settings: dict[str, Any] = {"log_level": self.log_level, **self.proxy_settings}
        return ProxyConfig(
            name=spec.name,
            listen_addr=spec.address,
            http_addr=spec.http_addr,
            metrics_addr=spec.metrics_addr,
            data_dir=spec.data_dir,
            token=self.token,
            node_token=self.node_token,
            replication_factor=min(settings.pop("replication_factor", 3), len(self.nodes)),
            raft=raft,
            peer_names={p.raft_addr: p.name for p in self.proxies if p.name != spec.name},
            nodes=[NodeEntry(n.name, n.address) for n in self.nodes],
            **settings,
        )

    def write_node_config(self, spec: NodeSpec) -> Path:
        spec.dir.mkdir(parents=True, exist_ok=True)
        write_private(spec.config_path, self.node_config_text(spec))
        return spec.config_path

    def write_proxy_config(self, spec: ProxySpec) -> Path:
        spec.dir.mkdir(parents=True, exist_ok=True)
        write_private(spec.config_path, to_toml(self.proxy_config(spec)))
        return spec.config_path

    def write_configs(self) -> None:
        """Write every process's TOML file (configs hold tokens: mode 0600)."""
        for node in self.nodes:
            self.write_node_config(node)
        for proxy in self.proxies:
            self.write_proxy_config(proxy)

    # -- what clients need -------------------------------------------------------------

    def git_url(self, proxy: str, relative_path: str) -> str:
        """`http://x:TOKEN@127.0.0.1:PORT/<relative_path>.git` through `proxy`'s gateway."""
        path = relative_path if relative_path.endswith(".git") else f"{relative_path}.git"
        return f"http://x:{self.token}@{self.proxy(proxy).http_addr}/{path}"

    def cluster_info(self, pids: dict[str, int | None], launcher_pid: int | None = None) -> dict[str, Any]:
        """The `cluster.json` document: every process's addresses and pid, and the token.

        Shape: {"version", "data_dir", "launcher_pid", "token", "clone_url_example",
        "proxies": [grpc addresses], "processes": [{"name", "role", "pid", "grpc_addr",
        "http_addr", "raft_addr", "metrics_addr", "data_path", "config_path",
        "log_path"}]}; "http_addr"/"raft_addr" are null for nodes.
        """
        processes: list[dict[str, Any]] = [
            {
                "name": p.name,
                "role": "proxy",
                "pid": pids.get(p.name),
                "grpc_addr": p.address,
                "http_addr": p.http_addr,
                "raft_addr": p.raft_addr,
                "metrics_addr": p.metrics_addr,
                "data_path": str(p.data_dir),
                "config_path": str(p.config_path),
                "log_path": str(p.log_path),
            }
            for p in self.proxies
        ]
        processes += [
            {
                "name": n.name,
                "role": "node",
                "pid": pids.get(n.name),
                "grpc_addr": n.address,
                "http_addr": None,
                "raft_addr": None,
                "metrics_addr": n.metrics_addr,
                "data_path": str(n.storage_path),
                "config_path": str(n.config_path),
                "log_path": str(n.log_path),
            }
            for n in self.nodes
        ]
        return {
            "version": LAYOUT_VERSION,
            "data_dir": str(self.root),
            "launcher_pid": launcher_pid,
            "token": self.token,
            "clone_url_example": self.git_url(self.proxies[0].name, "demo"),
            "proxies": [p.address for p in self.proxies],
            "processes": processes,
        }


def read_cluster_file(path: Path) -> dict[str, Any]:
    """The `cluster.json` a running `gitraft dev` wrote (see ClusterLayout.cluster_info),
    given the file or its data directory; LayoutError when missing or unreadable.

    What an operator command needs is `info["proxies"]` (gRPC addresses) and
    `info["token"]`."""
    path = Path(path)
    if path.is_dir():
        path = path / CLUSTER_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict) or not isinstance(info.get("proxies"), list) or "token" not in info:
            raise ValueError("no 'proxies' list or no 'token'")
    except FileNotFoundError as exc:
        raise LayoutError(f"no cluster file at {str(path)!r} (is gitraft dev running?)") from exc
    except (OSError, ValueError) as exc:
        raise LayoutError(f"unreadable cluster file {str(path)!r}: {exc}") from exc
    return info


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (temp file + rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
