"""Many clones of one repository at once (a CI fleet): where does the time go?

    .venv/bin/python -m bench clone_fleet        (or: make bench)
    .venv/bin/python bench/clone_fleet.py --clones 16 --commits 1000 --files 300

Generates a repository of realistic shape (bench.proxy_bench.make_repository), starts
a LocalCluster of one proxy and one node (so every clone is served by the same node),
pushes it, then clones it once alone and CLONES times concurrently through the proxy's
HTTP gateway. For each phase it prints the wall time and the CPU seconds used by:
- the node process itself (gRPC, piping bytes),
- the git processes the node ran (upload-pack / pack-objects: "pack generation"),
- the proxy process (HTTP gateway, routing, Raft).
CPU comes from /proc (the children's share once git exited and was reaped). If pack
generation dominates the concurrent phase, a pack-objects cache (one pack per identical
request, streamed to every reader) would remove most of it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._machine import describe
from bench.proxy_bench import make_repository, pack_mib
from cluster.testing import LocalCluster, run_git

PATH = "fleet/repo"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> tuple[float, float]:
    """(own CPU seconds, reaped children's CPU seconds) of process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime) / TICKS, (cutime + cstime) / TICKS


class Meter:
    """CPU used by the node, its git children and the proxy between start and stop."""

    def __init__(self, node_pid: int, proxy_pid: int) -> None:
        self.node_pid, self.proxy_pid = node_pid, proxy_pid
        self.before = (cpu(node_pid), cpu(proxy_pid))

    def stop(self) -> dict[str, float]:
        (node0, git0), (proxy0, _) = self.before
        node1, git1 = cpu(self.node_pid)
        proxy1, _ = cpu(self.proxy_pid)
        return {"node": node1 - node0, "git on the node": git1 - git0, "proxy": proxy1 - proxy0}


def clone_all(url: str, work: Path, count: int, tag: str) -> float:
    """`count` concurrent `git clone --bare` of `url`; wall seconds until all are done."""
    errors: list[str] = []

    def one(i: int) -> None:
        done = run_git(
            "clone", "-q", "--bare", url, str(work / f"{tag}-{i}"), cwd=work, check=False, timeout=900
        )
        if done.returncode != 0:
            errors.append(done.stderr.strip())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    if errors:
        raise RuntimeError(f"{len(errors)} clone(s) failed: {errors[0]}")
    return elapsed


def report(label: str, wall: float, used: dict[str, float]) -> None:
    total = sum(used.values())
    parts = ", ".join(f"{k} {v:.2f} s ({v / total:.0%})" for k, v in used.items()) if total else "-"
    print(f"  {label}: wall {wall:.2f} s; CPU {total:.2f} s: {parts}")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clones", type=int, default=16, help="concurrent clones (default 16)")
    parser.add_argument("--commits", type=int, default=1000, help="commits in the repository (default 1000)")
    parser.add_argument("--files", type=int, default=300, help="files in the repository (default 300)")
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory(prefix="gitraft-clone-fleet-") as tmp:
        work = Path(tmp)
        os.environ["HOME"] = tmp
        source = work / "source.git"
        make_repository(source, args.commits, args.files)
        print(f"repository: {args.commits} commits, {args.files} files, {pack_mib(source):.1f} MiB pack")
        with LocalCluster(work / "cluster", proxies=1, nodes=1) as cluster:
            url = cluster.git_url("proxy-1", PATH)
            run_git("push", "-q", url, "main", cwd=source, timeout=900)
            node, proxy = cluster.nodes["node-a"].process, cluster.proxies["proxy-1"].process
            assert node is not None and proxy is not None
            print(f"clones through one proxy, all served by one node ({args.clones} concurrent):")
            meter = Meter(node.pid, proxy.pid)
            wall = clone_all(url, work, 1, "alone")
            report("1 clone", wall, meter.stop())
            meter = Meter(node.pid, proxy.pid)
            wall = clone_all(url, work, args.clones, "fleet")
            report(f"{args.clones} clones", wall, meter.stop())
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
