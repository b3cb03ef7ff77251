"""docker-compose.yml's gitraft services, started from the compose file's own command
lines as local processes on loopback (tests/integration/compose_local.py renders the
configs they mount with remapped addresses), form a cluster that serves a git push
through one proxy and a clone through another."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing import REPO_ROOT, commit_file, init_work_tree, run_git
from tests.integration.compose_local import ComposeLocal


@pytest.fixture
def compose(tmp_path: Path) -> Iterator[ComposeLocal]:
    local = ComposeLocal(REPO_ROOT / "docker-compose.yml", tmp_path / "compose")
    try:
        yield local
    finally:
        local.stop()


def test_rendering_remaps_every_address_secret_and_volume(compose: ComposeLocal) -> None:
    assert compose.start_waves() == [["node-a", "node-b", "node-c"], ["proxy-1", "proxy-2", "proxy-3"]]
    rendered = {
        name: tomllib.loads(path.read_text())
        for name, service in compose.services.items()
        for path in service.config_files.values()
    }
    proxy = rendered["proxy-2"]
    assert proxy["raft"]["self_addr"] == compose.address("proxy-2", 7001)
    assert proxy["raft"]["peers"] == [compose.address("proxy-1", 7001), compose.address("proxy-3", 7001)]
    assert proxy["listen_addr"] == compose.address("proxy-2", 9001)
    assert [n["address"] for n in proxy["nodes"]] == [
        compose.address(n, 9101) for n in ("node-a", "node-b", "node-c")
    ]
    assert Path(proxy["token_file"]).read_text().strip() == compose.secret("gitraft_token")
    assert str(compose.workdir) in proxy["data_dir"]
    node = rendered["node-c"]
    assert node["listen_addr"] == compose.address("node-c", 9101)
    assert node["storage_path"].startswith(str(compose.workdir / "node-c"))
    text = "\n".join(str(r) for r in rendered.values())
    assert "/run/secrets" not in text and "/var/lib/gitraft" not in text and "0.0.0.0" not in text


def test_compose_command_lines_form_a_cluster_that_serves_push_and_clone(
    compose: ComposeLocal, tmp_path: Path
) -> None:
    compose.start(timeout=120)
    token = compose.secret("gitraft_token")
    push_url = f"http://gitraft:{token}@{compose.address('proxy-1', 8081)}/compose/demo.git"
    clone_url = f"http://gitraft:{token}@{compose.address('proxy-3', 8081)}/compose/demo.git"
    work = init_work_tree(tmp_path / "work")
    head = commit_file(work, "README", "deployed by compose\n")
    try:
        run_git("push", push_url, "HEAD:refs/heads/main", cwd=work, timeout=120)
        run_git("clone", "-q", clone_url, str(tmp_path / "clone"), cwd=tmp_path, timeout=120)
    except RuntimeError as exc:
        raise AssertionError(f"{exc}\n{compose.logs()}") from exc
    assert run_git("rev-parse", "HEAD", cwd=tmp_path / "clone").stdout.strip() == head
    assert (tmp_path / "clone" / "README").read_text() == "deployed by compose\n"
