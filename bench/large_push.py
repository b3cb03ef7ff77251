"""Push and clone a large repository through the gateway; report peak memory.

    .venv/bin/python bench/large_push.py --mib 200

Starts one node process and a `gitraft gateway` process (cluster.testing harness),
pushes MIB MiB of random (incompressible) blobs with the stock git client, clones it
back, and prints, for each phase, the wall time and the peak resident memory of the
node process, the gateway process and the git processes under the node (sampled every
50 ms; the kernel's VmHWM is printed too), and the CPU time the node and gateway used.
"local" is the baseline: the same clone by git alone over file://. The point: the node and the gateway stream,
so their peaks stay flat whatever the pack size; only git itself holds pack-sized state.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.testing import ManagedProcess, NodeProcess, free_port

BLOB_MIB = 4
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
}


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """Every descendant of `pid` (scan of /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


class Sampler:
    """Peak RSS of the node, the gateway and the node's git children while running."""

    def __init__(self, node_pid: int, gateway_pid: int) -> None:
        self.pids = {"node": node_pid, "gateway": gateway_pid}
        self.peak = {"node": 0, "gateway": 0, "git under node": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._cpu_start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu = {name: cpu_seconds(pid) - self._cpu_start[name] for name, pid in self.pids.items()}

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_kib(pid))
            git = sum(rss_kib(p) for p in children_of(self.pids["node"]))
            self.peak["git under node"] = max(self.peak["git under node"], git)


def git(*args: str, cwd: Path, stdin: bytes | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, input=stdin, check=True, env={**os.environ, **GIT_ENV})


def make_work_tree(path: Path, mib: int) -> None:
    """A repository whose one commit holds `mib` MiB of random blobs (git fast-import)."""
    git("init", "-q", "-b", "main", str(path), cwd=path.parent)
    stream = bytearray(b"commit refs/heads/main\ncommitter b <b@b.invalid> 1700000000 +0000\ndata 4\nbig\n")
    for i in range(max(1, mib // BLOB_MIB)):
        blob = secrets.token_bytes(BLOB_MIB * 1024 * 1024)
        stream += b"M 644 inline blob-%03d.bin\ndata %d\n%s\n" % (i, len(blob), blob)
    git("fast-import", "--quiet", cwd=path, stdin=bytes(stream))


def phase(name: str, sampler_args: tuple[int, int], action: object) -> None:
    with Sampler(*sampler_args) as sampler:
        start = time.monotonic()
        action()  # type: ignore[operator]
        elapsed = time.monotonic() - start
    peaks = ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in sampler.peak.items())
    cpu = ", ".join(f"{k} {v:.1f} s" for k, v in sampler.cpu.items())
    print(f"{name:6s} {elapsed:6.1f} s   peak RSS: {peaks}   CPU: {cpu}", flush=True)


def start_gateway(work: Path, node: NodeProcess) -> tuple[ManagedProcess, int]:
    """`gitraft gateway` in front of `node`, once it listens; (process, port)."""
    port = free_port()
    argv = [sys.executable, "-m", "cluster.cli.main", "gateway", "--upstream", node.address]
    argv += ["--upstream-token-file", str(work / "node.token"), "--token-file", str(work / "http.token")]
    argv += ["--listen", f"127.0.0.1:{port}", "--log-level", "warning"]
    gateway = ManagedProcess("gateway", argv, work / "gateway.log")
    gateway.spawn()
    for _ in range(200):
        assert gateway.alive(), gateway.log_text()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return gateway, port
        time.sleep(0.05)
    gateway.stop()
    raise RuntimeError(f"gateway did not listen: {gateway.log_text()}")


def run(work: Path, mib: int) -> None:
    token, http_token = secrets.token_hex(16), secrets.token_hex(16)
    (work / "node.token").write_text(token)
    (work / "http.token").write_text(http_token)
    print(f"generating {mib} MiB of random blobs...", flush=True)
    make_work_tree(work / "src", mib)
    with NodeProcess("node-a", work, token, log_level="info").start() as node:
        assert node.process is not None
        node.storage_path.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", "-b", "main", str(node.storage_path / "big.git"), cwd=work)
        gateway, port = start_gateway(work, node)
        try:
            url = f"http://x:{http_token}@127.0.0.1:{port}/big.git"
            pids = (node.process.pid, gateway.pid)
            idle = [rss_kib(pid) / 1024 for pid in pids]
            print(f"idle   node {idle[0]:.0f} MiB, gateway {idle[1]:.0f} MiB")
            phase("push", pids, lambda: git("push", "-q", url, "main", cwd=work / "src"))
            phase("clone", pids, lambda: git("clone", "-q", "--bare", url, str(work / "clone"), cwd=work))
            local = f"file://{node.storage_path / 'big.git'}"
            phase("local", pids, lambda: git("clone", "-q", "--bare", local, str(work / "local"), cwd=work))
            hwm = [rss_kib(pid, "VmHWM") / 1024 for pid in pids]
            print(f"VmHWM  node {hwm[0]:.0f} MiB, gateway {hwm[1]:.0f} MiB")
        finally:
            gateway.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=200, help="repository size in MiB (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitraft-bench-") as tmp:
        os.environ["HOME"] = tmp
        run(Path(tmp), args.mib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
