"""The shipped deployment files: alert rules (promtool check + unit tests, one per
alert), the Prometheus config, the Grafana dashboard's queries, docker-compose.yml
(`docker-compose config -q` and the network/secret layout) and the Dockerfile's shape.

promtool and docker-compose come from Debian's packages; `make test` installs them
when missing, so these tests never skip."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.testing import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
COMPOSE = REPO_ROOT / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gitraft-overview.json"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run `make deploy-tools` (make test does)"
    return path


def run(*argv: str, cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{argv!r} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"] for g in groups for r in g["rules"] if "alert" in r}


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    out = run(tool("promtool"), "check", "rules", str(RULES))
    assert "SUCCESS" in out
    out = run(tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert "SUCCESS" in out and "FAILED" not in out


def test_every_alert_has_a_firing_test_and_names_a_gitraft_command() -> None:
    fired: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    names = alert_names()
    assert len(names) >= 10
    assert names - fired == set(), "alerts without a test that makes them fire"
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                text = rule["annotations"]["description"]
                assert re.search(r"`gitraft [a-z-]+", text), f"{rule['alert']} names no gitraft command"


def test_prometheus_config_is_valid() -> None:
    out = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert "SUCCESS" in out


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"q:{i}", "expr": q} for i, q in enumerate(queries)]}
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    assert "SUCCESS" in run(tool("promtool"), "check", "rules", str(path))


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/gitraft.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
    source = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    assert {
        p["datasource"]["uid"] for p in json.loads(DASHBOARD.read_text())["panels"] if "datasource" in p
    } == {uid}


def test_docker_compose_config_is_valid() -> None:
    run(tool("docker-compose"), "-f", str(COMPOSE), "config", "-q")


def gitraft_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image", "").startswith("gitraft")}


def test_compose_layout_keeps_raft_and_nodes_internal_and_secrets_out() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = gitraft_services(compose)
    assert sorted(services) == ["node-a", "node-b", "node-c", "proxy-1", "proxy-2", "proxy-3"]
    assert {"prometheus", "grafana"} <= set(compose["services"])
    assert compose["networks"]["internal"]["internal"] is True
    for name, service in compose["services"].items():
        assert service.get("restart") == "unless-stopped", name
        assert "healthcheck" in service, name
    for name, service in services.items():
        published = {p.split(":")[-1] for p in service.get("ports", [])}
        if name.startswith("node-"):
            assert published == set() and service["networks"] == ["internal"], name
        else:
            assert published == {"8081", "9001"}, name  # git HTTP and gRPC only; Raft 7001 is not
            config = tomllib.loads((DEPLOY / "config" / f"{name}.toml").read_text())
            assert config["raft"]["self_addr"] == f"{name}-raft:7001"
            assert f"{name}-raft" in service["networks"]["internal"]["aliases"]
    for config in (DEPLOY / "config").glob("*.toml"):
        data = tomllib.loads(config.read_text())
        for table in (data, data.get("raft", {})):
            assert not {"token", "node_token", "password"} & set(table), f"secret inline in {config.name}"
    assert "secrets/" in (REPO_ROOT / ".gitignore").read_text()


def dockerfile_stages() -> list[list[str]]:
    stages: list[list[str]] = []
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_non_root_with_the_gitraft_entry_point() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert final[0] == "FROM ${PYTHON_IMAGE}"
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.\d+-slim", text)
    assert 'ENTRYPOINT ["gitraft"]' in final
    users = [line for line in final if line.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("root", "0")
    installs = " ".join(line for line in final if "apt-get install" in line)
    assert "git" in installs.split()
    for build_tool in ("build-essential", "gcc", "make", "-dev"):
        assert build_tool not in installs, f"{build_tool} in the final stage"
    assert any(line.startswith("COPY --from=build /opt/gitraft") for line in final)
    copied = {
        line.split()[1]
        for stage in stages
        for line in stage
        if line.startswith("COPY ") and "--from" not in line
    }
    for path in copied - {"pyproject.toml"}:
        assert (REPO_ROOT / path).exists(), f"Dockerfile copies {path}, which does not exist"


@pytest.mark.parametrize("service", ["proxy-1", "node-a"])
def test_compose_commands_run_the_image_entry_point(service: str) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    entry = compose["services"][service]["entrypoint"]
    assert entry == ["gitraft"]
    command = compose["services"][service]["command"]
    assert command[0] in ("proxy", "node") and command[1] == "--config"
    mount = next(v for v in compose["services"][service]["volumes"] if v.startswith("./deploy/config:"))
    container_dir = mount.split(":")[1]
    assert command[2].startswith(container_dir + "/")
    assert (DEPLOY / "config" / Path(command[2]).name).is_file()


def test_prometheus_scrapes_every_gitraft_service_on_its_metrics_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {
        j["job_name"]: [t for s in j["static_configs"] for t in s["targets"]]
        for j in config["scrape_configs"]
    }
    compose = yaml.safe_load(COMPOSE.read_text())
    expected: dict[str, list[str]] = {"gitraft-proxy": [], "gitraft-node": []}
    for name in sorted(gitraft_services(compose)):
        metrics = tomllib.loads((DEPLOY / "config" / f"{name}.toml").read_text())["metrics_addr"]
        job = "gitraft-proxy" if name.startswith("proxy-") else "gitraft-node"
        expected[job].append(f"{name}:{metrics.rsplit(':', 1)[1]}")
    assert {k: sorted(v) for k, v in jobs.items() if k in expected} == expected
    selected = set(re.findall(r'job=~?"([^"]+)"', RULES.read_text()))
    assert selected and all(set(s.split("|")) <= set(expected) for s in selected)


def test_the_readme_alert_table_lists_every_alert() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("### Alerts") : readme.index("## Deployment")]
    listed = set(re.findall(r"`(Gitraft[A-Za-z]+)`", table))
    assert listed == alert_names()
