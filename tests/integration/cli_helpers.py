"""Running the real `gitraft` executable against a LocalCluster, as an operator would.

`Operator(cluster, workdir)` writes the cluster's `cluster.json` (what `gitraft dev`
writes) under `<workdir>/.gitraft/` and runs `gitraft ...` there as a subprocess with no
GITRAFT_* variables, so the commands find the cluster the way they do after `make run`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cluster.local.layout import CLUSTER_FILE, write_private
from cluster.testing import LocalCluster, child_env

CLI_TIMEOUT = 120.0


def gitraft_argv() -> list[str]:
    """The installed `gitraft` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("gitraft")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cluster.cli.main"]


class Operator:
    def __init__(self, cluster: LocalCluster, workdir: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        (workdir / ".gitraft").mkdir(parents=True, exist_ok=True)
        self.write_cluster_file()

    def write_cluster_file(self) -> None:
        pids = {name: proc.process.proc.pid for name, proc in self.cluster.proxies.items() if proc.process}
        info = self.cluster.layout.cluster_info(pids)
        write_private(self.workdir / ".gitraft" / CLUSTER_FILE, json.dumps(info, indent=2))

    def run(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`gitraft ARGS` in the work directory (or `cwd`); never raises on a non-zero exit."""
        base = {k: v for k, v in child_env().items() if not k.startswith("GITRAFT_")}
        done = subprocess.run(
            [*gitraft_argv(), *args],
            check=False,
            cwd=cwd or self.workdir,
            env={**base, **(env or {})},
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def ok(self, *args: str) -> str:
        """stdout of a command that must exit 0."""
        done = self.run(*args)
        assert done.returncode == 0, (
            f"gitraft {' '.join(args)} exited {done.returncode}: {done.stderr}{done.stdout}"
        )
        return done.stdout

    def json(self, *args: str, code: int = 0) -> Any:
        """The JSON a command prints with --json (it must exit `code`)."""
        done = self.run(*args, "--json")
        assert done.returncode == code, f"gitraft {' '.join(args)} exited {done.returncode}: {done.stderr}"
        return json.loads(done.stdout)

    def refused(self, *args: str) -> str:
        """stderr of a command that must be refused (exit 4) in one line."""
        done = self.run(*args)
        assert done.returncode == 4, f"expected a refusal, got {done.returncode}: {done.stdout}{done.stderr}"
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        return done.stderr.strip()
