"""A real Prometheus next to a local cluster (`gitraft dev --prometheus`, tests).

`LocalPrometheus` runs Debian's `prometheus` binary on 127.0.0.1 with a generated
config: job `gitraft-proxy` scrapes the proxies' /metrics, job `gitraft-node` the
nodes', and the shipped rules (`deploy/prometheus/alerts.yml`) are evaluated. Its
storage lives in its own directory; `stop()` (or leaving the `with` block) stops it,
and it dies with the thread that started it (cluster.local.pdeathsig) even on SIGKILL.

    with LocalPrometheus(workdir, proxies=[...], nodes=[...], port=free_port()) as prom:
        prom.wait_ready()
        prom.wait_alert("GitraftNodeDown", {"storage": "node-b"}, timeout=90)

The config file is JSON (a subset of YAML that Prometheus reads).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from cluster.local.processes import REPO_ROOT, ManagedProcess

RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"


class PrometheusError(Exception):
    """Prometheus is missing, did not start, or answered with an error."""


def prometheus_config(
    proxies: list[str], nodes: list[str], rules: Path = RULES, interval: float = 1.0
) -> dict[str, Any]:
    """A Prometheus config scraping `proxies` and `nodes` ("host:port" of /metrics)."""
    every = f"{max(1, round(interval * 1000))}ms"
    return {
        "global": {"scrape_interval": every, "evaluation_interval": every, "scrape_timeout": every},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "gitraft-proxy", "static_configs": [{"targets": list(proxies)}]},
            {"job_name": "gitraft-node", "static_configs": [{"targets": list(nodes)}]},
        ],
    }


class LocalPrometheus:
    """One prometheus process on 127.0.0.1:`port` with files under `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        proxies: list[str],
        nodes: list[str],
        port: int,
        interval: float = 1.0,
        rules: Path = RULES,
        binary: str = "prometheus",
    ) -> None:
        found = shutil.which(binary)
        if found is None:
            raise PrometheusError(f"{binary!r} not found (Debian: apt-get install prometheus)")
        self.workdir = Path(workdir)
        self.address = f"127.0.0.1:{port}"
        self.config_path = self.workdir / "prometheus.yml"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(prometheus_config(proxies, nodes, rules, interval), indent=2))
        argv = [
            found,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--storage.tsdb.retention.time=1d",
        ]
        self.process = ManagedProcess(
            "prometheus", argv, self.workdir / "prometheus.log", die_with_parent=True, cwd=self.workdir
        )

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> LocalPrometheus:
        self.process.spawn()
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until /-/ready answers 200; PrometheusError if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise PrometheusError(f"prometheus exited; log ends with:\n{self.process.log_text(2000)}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready after {timeout:g}s:\n{self.process.log_text(2000)}")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/`path` and return its `data`; PrometheusError on an error status."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise PrometheusError(f"{path}: {body.get('error', body)!r}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        return list(self.api("query", query=expr)["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Every pending or firing alert (labels, state, annotations)."""
        return list(self.api("alerts")["alerts"])

    def wait_alert(
        self, name: str, labels: dict[str, str] | None = None, state: str = "firing", timeout: float = 90.0
    ) -> dict[str, Any]:
        """Wait until alert `name` (with `labels`) is in `state`; return it, or raise
        TimeoutError with the alerts seen last."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = self.alerts()
            for alert in seen:
                got = alert.get("labels", {})
                wanted = {"alertname": name, **(labels or {})}
                if alert.get("state") == state and all(got.get(k) == v for k, v in wanted.items()):
                    return alert
            time.sleep(0.5)
        raise TimeoutError(f"alert {name} {labels or {}} not {state} after {timeout:g}s; saw {seen!r}")
