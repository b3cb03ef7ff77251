"""What a proxy costs on git, and how long writes stop when a node or a proxy dies.

    .venv/bin/python -m bench proxy_bench        (or: make bench)
    .venv/bin/python bench/proxy_bench.py --runs 5 --rounds 3 --settings test

Generates a repository of realistic shape with `git fast-import` (COMMITS commits, each
editing a few of FILES text files, repacked: ~18 MiB), starts a LocalCluster (3 proxies,
3 nodes, replication factor 3, 127.0.0.1 only) and, when cheap, one extra node with a
`gitraft gateway` in front of it and no proxy. Then:

1. Overhead on git. Each operation runs RUNS times against each target, targets in a
   rotating order; the table shows median (min-max) wall time of the git command and
   the ratio gitraft / plain git. Targets:
   - plain git: a bare repository on the same disk, over file:// (a clone is
     `git clone --no-local`, so git packs objects as a server would);
   - gateway: `gitraft gateway` -> one node (HTTP -> gRPC -> git), no proxy;
   - gitraft: a proxy's HTTP gateway (HTTP -> proxy -> primary node, Raft write
     intent, 3 replicas).
   Operations: the initial push of the whole repository (once), `git clone --bare`,
   a push of 10 new commits, a fetch with nothing new, and a clone of a second, big
   repository (--big-mib MiB of random blobs, 100 by default). The table gives the
   ratios gitraft / plain git and gitraft / gateway; then each goal of issue #13
   (GOALS) is printed as met or not, with the machine (cores, CPU, load).
   After every push through the cluster, the bench waits (untimed) until every replica
   has converged, so background replication does not slow the next measurement.
2. Node failover: SIGKILL of the repository's primary node, then a client retries a
   small push through a proxy every 50 ms (bounded) until one is acknowledged; the
   figure is the time from the kill to that acknowledgement. The node is restarted and
   the replicas converge between rounds.
3. Proxy SIGKILL: the same, killing the Raft-leader proxy and pushing through another.

--settings default uses ProxyConfig's defaults for health checks and failover (what a
deployment runs unless told otherwise); --settings test uses the harness's faster
TEST_PROXY_SETTINGS.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._machine import describe
from bench._report import GATEWAY, GITRAFT, PLAIN, Goal, Row, check_goals, table
from cluster.config import ProxyConfig
from cluster.testing import (
    GIT_ENV,
    TEST_PROXY_SETTINGS,
    LocalCluster,
    ManagedProcess,
    NodeProcess,
    free_port,
    run_git,
)

PATH = "bench/realistic"
PUSH_COMMITS = 10
RETRY_EVERY = 0.05
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._(),=+"
BIG_PATH = "bench/big"
BIG_BLOB_MIB = 4
GOALS = [
    Goal("clone --bare, big repository", GATEWAY, 1.10),
    Goal(f"push, {PUSH_COMMITS} new commits", PLAIN, 1.3),
    Goal("fetch, up to date", PLAIN, 2.0),
    Goal("push, initial", PLAIN, 1.3),
]


# -- the repository ------------------------------------------------------------------


def fast_import_stream(commits: int, files: int, seed: int = 7) -> bytes:
    """A linear history on `main`: the first commit adds `files` text files of 40-200
    lines; each later one edits 3 of them (30-110 lines replaced, inserted or removed)."""
    rng = random.Random(seed)

    def line() -> str:
        return "".join(rng.choices(ALPHABET, k=rng.randint(20, 70))) + "\n"

    contents = [[line() for _ in range(rng.randint(40, 200))] for _ in range(files)]
    out = bytearray()
    for c in range(commits):
        message = f"commit {c}\n".encode()
        out += b"commit refs/heads/main\nmark :%d\n" % (c + 1)
        out += b"committer Bench <bench@gitraft.invalid> %d +0000\n" % (1_700_000_000 + 60 * c)
        out += b"data %d\n%s" % (len(message), message)
        if c:
            out += b"from :%d\n" % c
        touched = range(files) if c == 0 else rng.sample(range(files), min(3, files))
        for f in touched:
            lines = contents[f]
            for _ in range(rng.randint(30, 110) if c else 0):
                i = rng.randrange(len(lines))
                r = rng.random()
                if r < 0.6:
                    lines[i] = line()
                elif r < 0.8 or len(lines) < 20:
                    lines.insert(i, line())
                else:
                    del lines[i]
            blob = "".join(lines).encode()
            out += b"M 644 inline src/d%02d/f%03d.txt\ndata %d\n%s\n" % (f % 37, f, len(blob), blob)
    return bytes(out)


def make_repository(path: Path, commits: int, files: int) -> None:
    """A bare repository at `path`, fully repacked (as a server's would be)."""
    run_git("init", "-q", "--bare", "-b", "main", str(path), cwd=path.parent)
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        input=fast_import_stream(commits, files),
        cwd=path,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    run_git("repack", "-a", "-d", "-f", "-q", cwd=path, timeout=600)


def make_big_repository(path: Path, mib: int) -> None:
    """A bare repository of `mib` MiB of random (incompressible) blobs, BIG_BLOB_MIB each,
    one per commit: what a clone of large binary content costs."""
    run_git("init", "-q", "--bare", "-b", "main", str(path), cwd=path.parent)
    stream = bytearray()
    for i in range(max(1, mib // BIG_BLOB_MIB)):
        data = secrets.token_bytes(BIG_BLOB_MIB * 2**20)
        stream += b"commit refs/heads/main\ncommitter Bench <bench@gitraft.invalid> %d +0000\n" % (
            1_700_000_000 + i
        )
        stream += b"data 4\nbig\n"
        stream += b"M 644 inline blobs/%03d.bin\ndata %d\n%s\n" % (i, len(data), data)
    subprocess.run(
        ["git", "-c", "pack.compression=0", "-c", "fastimport.unpackLimit=0", "fast-import", "--quiet"],
        input=bytes(stream),
        cwd=path,
        check=True,
        env={**os.environ, **GIT_ENV},
    )


def pack_mib(repo: Path) -> float:
    return sum(p.stat().st_size for p in (repo / "objects" / "pack").glob("*.pack")) / 2**20


# -- the gateway in front of one node ----------------------------------------------------


def start_gateway(work: Path, node: NodeProcess, http_token: str) -> tuple[ManagedProcess, int]:
    """`gitraft gateway` in front of `node`, once it listens; (process, port)."""
    (work / "node.token").write_text(node.token)
    (work / "http.token").write_text(http_token)
    port = free_port()
    argv = [sys.executable, "-m", "cluster.cli.main", "gateway", "--upstream", node.address]
    argv += ["--upstream-token-file", str(work / "node.token"), "--token-file", str(work / "http.token")]
    argv += ["--listen", f"127.0.0.1:{port}", "--log-level", "info"]
    gateway = ManagedProcess("gateway", argv, work / "gateway.log", die_with_parent=True)
    gateway.spawn()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not gateway.alive():
            break
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return gateway, port
        time.sleep(0.05)
    log = gateway.log_text()
    gateway.stop()
    raise RuntimeError(f"gateway did not listen: {log}")


# -- measuring ------------------------------------------------------------------------------


def timed(*git_args: str, cwd: Path, timeout: float = 120.0) -> float:
    """Wall time of one `git` command (run_git: fails loudly)."""
    start = time.monotonic()
    run_git(*git_args, cwd=cwd, timeout=timeout)
    return time.monotonic() - start


def commit_batch(work: Path, count: int, tag: str) -> None:
    """`count` commits in the work tree, each appending to one existing file."""
    files = sorted((work / "src").rglob("*.txt"))
    rng = random.Random(tag)
    for i in range(count):
        target = rng.choice(files)
        with target.open("a") as f:
            f.write(f"{tag} {i} {secrets.token_hex(24)}\n")
        run_git("add", str(target.relative_to(work)), cwd=work)
        run_git("commit", "-q", "-m", f"{tag} {i}", cwd=work)


def push_until_acked(url: str, work: Path, since: float, limit: float) -> tuple[float, int]:
    """Retry `git push url main` every RETRY_EVERY s until it succeeds; (seconds since
    `since`, attempts). TimeoutError after `limit` seconds."""
    attempts = 0
    while True:
        remaining = limit - (time.monotonic() - since)
        if remaining <= 0:
            raise TimeoutError(f"no push acknowledged in {limit:.0f} s ({attempts} attempts)")
        attempts += 1
        try:
            done = run_git("push", "-q", url, "main", cwd=work, check=False, timeout=remaining)
        except subprocess.TimeoutExpired:
            continue
        if done.returncode == 0:
            return time.monotonic() - since, attempts
        time.sleep(RETRY_EVERY)


def summary(label: str, gaps: list[float], detail: list[str]) -> None:
    ms = [g * 1000 for g in gaps]
    print(f"{label} ({len(gaps)} rounds):")
    print(f"  median {statistics.median(ms):.0f} ms   max {max(ms):.0f} ms")
    for line in detail:
        print(f"    {line}")
    sys.stdout.flush()


# -- the bench -----------------------------------------------------------------------------


class Bench:
    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work = work
        self.args = args
        self.cluster: LocalCluster | None = None
        self.gateway_url = ""
        self.solo: NodeProcess | None = None
        self.plain = work / "realistic.git"
        self.tree = work / "tree"

    @property
    def c(self) -> LocalCluster:
        assert self.cluster is not None
        return self.cluster

    def urls(self, path: str = PATH) -> dict[str, str]:
        name = path.rsplit("/", 1)[-1]
        urls = {PLAIN: f"file://{self.work / name}.git", GITRAFT: self.c.git_url("proxy-1", path)}
        if self.gateway_url:
            urls[GATEWAY] = f"{self.gateway_url}/{name}.git"
        return urls

    def settle(self, target: str, path: str = PATH) -> None:
        """After a push through the cluster: wait (untimed) for every replica."""
        if target == GITRAFT:
            self.c.wait_converged(path, timeout=300)

    def rotations(self, targets: list[str]) -> list[list[str]]:
        return [targets[i % len(targets) :] + targets[: i % len(targets)] for i in range(self.args.runs)]

    def overhead(self) -> None:
        urls = self.urls()
        targets = [t for t in (PLAIN, GATEWAY, GITRAFT) if t in urls]
        rows: list[Row] = []

        # Initial push of everything (once per target).
        initial: dict[str, list[float]] = {}
        for target in targets:
            initial[target] = [timed("push", "-q", urls[target], "main", cwd=self.tree, timeout=600)]
            self.settle(target)
        rows.append(("push, initial", initial))
        print(f"push, initial: {pack_mib(self.plain):.0f} MiB pack, 1 run")

        clones: dict[str, list[float]] = {t: [] for t in targets}
        for k, order in enumerate(self.rotations(targets)):
            for target in order:
                clones[target].append(self.clone(urls[target], target, f"clone-{k}"))
        rows.append(("clone --bare", clones))

        pushes: dict[str, list[float]] = {t: [] for t in targets}
        fetches: dict[str, list[float]] = {t: [] for t in targets}
        for k, order in enumerate(self.rotations(targets)):
            commit_batch(self.tree, PUSH_COMMITS, f"push-{k}")
            for target in order:
                pushes[target].append(timed("push", "-q", urls[target], "main", cwd=self.tree))
                self.settle(target)
            for target in order:
                fetches[target].append(timed("fetch", "-q", urls[target], "main", cwd=self.tree))
        rows.append((f"push, {PUSH_COMMITS} new commits", pushes))
        rows.append(("fetch, up to date", fetches))
        if self.args.big_mib:
            rows.append(("clone --bare, big repository", self.big_clones(targets)))

        print(f"git through each target, {self.args.runs} runs: median (min-max)")
        table(rows, targets)
        check_goals(rows, GOALS)
        print(describe())

    def clone(self, url: str, target: str, name: str) -> float:
        dest = self.work / f"{name}-{target.replace(' ', '-')}"
        argv = ["clone", "-q", "--bare", url, str(dest)]
        if target == PLAIN:
            argv.insert(1, "--no-local")
        elapsed = timed(*argv, cwd=self.work, timeout=900)
        shutil.rmtree(dest)
        return elapsed

    def big_clones(self, targets: list[str]) -> dict[str, list[float]]:
        """Clones of a BIG repository (random blobs), put in place by an untimed push."""
        source = self.work / "big-source.git"
        make_big_repository(source, self.args.big_mib)
        run_git("init", "-q", "--bare", "-b", "main", str(self.work / "big.git"), cwd=self.work)
        if self.solo is not None:
            run_git(
                "init", "-q", "--bare", "-b", "main", str(self.solo.storage_path / "big.git"), cwd=self.work
            )
        urls = self.urls(BIG_PATH)
        for target in targets:
            run_git("push", "-q", urls[target], "main", cwd=source, timeout=900)
            self.settle(target, BIG_PATH)
        print(f"clone --bare, big repository: {pack_mib(source):.0f} MiB of random blobs")
        clones: dict[str, list[float]] = {t: [] for t in targets}
        for k, order in enumerate(self.rotations(targets)):
            for target in order:
                clones[target].append(self.clone(urls[target], target, f"big-{k}"))
        return clones

    def node_failover(self) -> None:
        gaps: list[float] = []
        detail: list[str] = []
        for r in range(self.args.rounds):
            self.c.wait_converged(PATH, timeout=120)
            repo = self.c.repository(PATH)
            assert repo is not None
            victim = repo.primary
            proxy = f"proxy-{r % len(self.c.proxies) + 1}"
            commit_batch(self.tree, 1, f"node-kill-{r}")
            since = time.monotonic()
            self.c.kill(victim)
            gap, attempts = push_until_acked(self.c.git_url(proxy, PATH), self.tree, since, self.args.limit)
            gaps.append(gap)
            after = self.c.repository(PATH)
            new_primary = after.primary if after is not None else "?"
            detail.append(
                f"round {r + 1}: killed {victim}, pushed via {proxy}: {gap * 1000:.0f} ms, "
                f"{attempts} attempts, new primary {new_primary}"
            )
            self.c.start_process(victim)
        self.c.wait_converged(PATH, timeout=120)
        summary("SIGKILL of the primary node -> next acknowledged push through a proxy", gaps, detail)

    def proxy_failover(self) -> None:
        gaps: list[float] = []
        detail: list[str] = []
        for r in range(self.args.rounds):
            self.c.wait_converged(PATH, timeout=120)
            leader = self.c.wait_for_leader()
            names = sorted(self.c.proxies)
            survivor = names[(names.index(leader) + 1) % len(names)]
            commit_batch(self.tree, 1, f"proxy-kill-{r}")
            since = time.monotonic()
            self.c.kill(leader)
            gap, attempts = push_until_acked(
                self.c.git_url(survivor, PATH), self.tree, since, self.args.limit
            )
            gaps.append(gap)
            new_leader = self.c.wait_for_leader(exclude=[leader])
            detail.append(
                f"round {r + 1}: killed {leader}, pushed via {survivor}: {gap * 1000:.0f} ms, "
                f"{attempts} attempts, new leader {new_leader}"
            )
            self.c.start_process(leader)
        self.c.wait_converged(PATH, timeout=120)
        summary("SIGKILL of the Raft-leader proxy -> next acknowledged push through another", gaps, detail)

    def run(self) -> None:
        args = self.args
        started = time.monotonic()
        make_repository(self.work / "src.git", args.commits, args.files)
        run_git("init", "-q", "--bare", "-b", "main", str(self.plain), cwd=self.work)
        run_git("clone", "-q", str(self.work / "src.git"), str(self.tree), cwd=self.work, timeout=600)
        src = self.work / "src.git"
        print(describe())
        print(
            f"repository: {args.commits} commits, {args.files} files, "
            f"{pack_mib(src):.1f} MiB pack (generated in {time.monotonic() - started:.1f} s)"
        )
        settings: dict[str, Any] = dict(TEST_PROXY_SETTINGS) if args.settings == "test" else {}
        effective = {**vars(ProxyConfig(token="x", node_token="x")), **settings}
        keys = ("health_interval", "health_timeout", "health_failure_threshold", "failover_interval")
        print(f"proxy settings ({args.settings}): " + ", ".join(f"{k} {effective[k]}" for k in keys))
        sys.stdout.flush()
        with LocalCluster(self.work / "cluster", proxies=3, nodes=3, proxy_settings=settings) as cluster:
            self.cluster = cluster
            gateway: ManagedProcess | None = None
            solo: NodeProcess | None = None
            try:
                if not args.no_gateway:
                    solo = NodeProcess(
                        "solo", self.work / "solo", cluster.node_token, log_level="info", die_with_parent=True
                    )
                    solo.start()
                    solo.storage_path.mkdir(parents=True, exist_ok=True)
                    run_git(
                        "init",
                        "-q",
                        "--bare",
                        "-b",
                        "main",
                        str(solo.storage_path / "realistic.git"),
                        cwd=self.work,
                    )
                    gateway, port = start_gateway(self.work / "solo", solo, cluster.token)
                    self.gateway_url = f"http://x:{cluster.token}@127.0.0.1:{port}"
                    self.solo = solo
                self.overhead()
                if gateway is not None:  # not needed any more: keep the 2 cores for the rest
                    gateway.stop()
                    gateway = None
                if solo is not None:
                    solo.stop()
                    solo = None
                    self.solo = None
                if not args.overhead_only:
                    self.node_failover()
                    self.proxy_failover()
            finally:
                if gateway is not None:
                    gateway.stop()
                if solo is not None:
                    solo.stop()
                self.cluster = None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commits", type=int, default=2000, help="commits in the repository (default 2000)")
    parser.add_argument("--files", type=int, default=500, help="files in the repository (default 500)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each git operation (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="kill rounds of each failover (default 3)")
    parser.add_argument(
        "--limit",
        type=float,
        default=60.0,
        help="seconds a failover may take before the bench fails (default 60)",
    )
    parser.add_argument(
        "--settings",
        choices=("default", "test"),
        default="default",
        help="proxy health/failover settings: ProxyConfig defaults or TEST_PROXY_SETTINGS (default: default)",
    )
    parser.add_argument("--no-gateway", action="store_true", help="skip the gateway-without-proxy target")
    parser.add_argument(
        "--overhead-only", action="store_true", help="only the overhead table and goals (no failover rounds)"
    )
    parser.add_argument(
        "--big-mib", type=int, default=100, help="MiB of the big repository cloned (default 100; 0 skips it)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitraft-proxy-bench-") as tmp:
        os.environ["HOME"] = tmp
        Bench(Path(tmp), args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
