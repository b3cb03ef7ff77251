"""`gitraft dev --prometheus`: the launcher starts a real Prometheus that scrapes every
process with the shipped rules, prints its URL, and stops it with the cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from cluster.local.layout import PORTS_PER_PROCESS
from cluster.local.ports import free_port_block
from cluster.testing import child_env


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def prometheus_pids(marker: Path) -> set[int]:
    """Pids of prometheus processes whose command line names `marker` (our data dir)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"prometheus") and str(marker).encode() in b" ".join(argv):
                found.add(int(entry.name))
    return found


def test_gitraft_dev_prometheus_scrapes_every_process_and_stops_with_the_cluster(tmp_path: Path) -> None:
    block = free_port_block(PORTS_PER_PROCESS * 6)
    out_path, err_path = tmp_path / "dev.out", tmp_path / "dev.err"
    argv = [sys.executable, "-m", "cluster.cli.main", "dev", "--data-dir", str(tmp_path / "data")]
    argv += ["--base-port", str(block[0]), "--prometheus"]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=child_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        url = ""
        while time.monotonic() < deadline and not url:
            assert proc.poll() is None, f"gitraft dev exited: {err_path.read_text()[-3000:]}"
            match = re.search(r"^prometheus .*: (http://127\.0\.0\.1:\d+)$", out_path.read_text(), re.M)
            url = match.group(1) if match else ""
            time.sleep(0.2)
        assert url, f"no prometheus URL printed: {out_path.read_text()}"

        def up_targets() -> dict[str, float]:
            result = get(f"{url}/api/v1/query?query=up")["data"]["result"]
            return {f"{r['metric']['job']}/{r['metric']['instance']}": float(r["value"][1]) for r in result}

        targets: dict[str, float] = {}
        while time.monotonic() < deadline:
            targets = up_targets()
            if len(targets) == 6 and all(v == 1 for v in targets.values()):
                break
            time.sleep(0.5)
        assert sorted(t.split("/")[0] for t in targets) == ["gitraft-node"] * 3 + ["gitraft-proxy"] * 3
        assert all(v == 1 for v in targets.values()), targets
        groups = get(f"{url}/api/v1/rules")["data"]["groups"]
        assert "GitraftNodeDown" in {r["name"] for g in groups for r in g["rules"]}
        started = prometheus_pids(tmp_path)
        assert len(started) == 1

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        end = time.monotonic() + 30
        while prometheus_pids(tmp_path) and time.monotonic() < end:
            time.sleep(0.2)
        assert not prometheus_pids(tmp_path), "prometheus outlived gitraft dev"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
