"""The runtime never reaches test tooling or the local-cluster launcher, and `node/`
never imports `cluster/` (DESIGN.md: dependencies point one way).

The import graph is read statically from every `import` statement in a module, function
bodies included, so a lazy import counts as much as a top-level one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cluster", "node", "common", "gitraft", "tests", "bench")
# What `gitraft proxy` and `gitraft node` run.
RUNTIME_ROOTS = ("cluster.proxy.main", "cluster.cli.proxy", "node.main", "cluster.cli.node")
# Test tooling and the local-cluster launcher: shipped, never imported by the runtime.
NOT_RUNTIME = ("cluster.testing", "cluster.local", "tests", "bench")


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(name: str) -> set[str]:
    """Project modules `name` imports anywhere in its body (parents of each included)."""
    path = module_file(name)
    if path is None:
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for target in targets:
            if target.split(".")[0] in PACKAGES and module_file(target) is not None:
                parts = target.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in found if module_file(m) is not None}


def reachable(roots: tuple[str, ...]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imports_of(name) - seen)
    return seen


def test_the_graph_reader_sees_lazy_imports() -> None:
    # cluster.cli.proxy imports cluster.proxy.main inside a function.
    assert "cluster.proxy.main" in imports_of("cluster.cli.proxy")
    assert "cluster.local.ports" in imports_of("cluster.testing.raft_cluster")


def test_proxy_and_node_never_reach_test_tooling_or_the_launcher() -> None:
    runtime = reachable(RUNTIME_ROOTS)
    assert "cluster.proxy.server" in runtime and "node.server" in runtime
    bad = sorted(m for m in runtime if m.startswith(NOT_RUNTIME))
    assert bad == []


def test_node_never_imports_cluster() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imports_of(f"node.{path.stem}") if m.startswith("cluster")
        )
        for path in (ROOT / "node").glob("*.py")
        if path.stem != "__init__"
    }
    assert {k: v for k, v in offenders.items() if v} == {}
