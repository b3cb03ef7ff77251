"""Run docker-compose.yml's gitraft services as local processes on 127.0.0.1.

No Docker engine runs here, so `ComposeLocal` reads each gitraft service (image
`gitraft*`) from the compose file and starts its `entrypoint` + `command` as a local
process, with the files it mounts rendered for loopback:

- every "host:port" in a mounted config whose host is a compose service (or one of its
  network aliases or its hostname), and every "0.0.0.0:port" (the service's own), is
  remapped to 127.0.0.1 and a free port per (service, container port);
- `/run/secrets/NAME` becomes a file holding a random secret shared by every service;
- a named volume's mount point becomes a directory of the service's own; a bind mount
  of a directory of configs becomes the rendered copy.

The health check is the compose file's own `healthcheck.test`, with `gitraft-healthcheck`
run from deploy/healthcheck.py and its address remapped.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cluster.local.ports import free_port
from cluster.local.processes import REPO_ROOT, ManagedProcess, child_env

ADDRESS = re.compile(r"\b([A-Za-z0-9][A-Za-z0-9.-]*):(\d{2,5})\b")
SECRET = re.compile(r"/run/secrets/([A-Za-z0-9_.-]+)")


@dataclass
class LocalService:
    name: str
    argv: list[str]
    health: list[str]
    depends_on: list[str]
    process: ManagedProcess | None = None
    config_files: dict[str, Path] = field(default_factory=dict)


class ComposeLocal:
    """The gitraft services of a compose file, runnable on loopback (see module doc)."""

    def __init__(self, compose_file: Path, workdir: Path) -> None:
        self.compose = yaml.safe_load(compose_file.read_text())
        self.root = compose_file.parent
        self.workdir = workdir
        self.ports: dict[tuple[str, int], int] = {}
        self.secrets = {name: secrets.token_hex(16) for name in self.compose.get("secrets", {})}
        self.owners = self._host_owners()
        self.services = {name: self._service(name, spec) for name, spec in self._gitraft_services().items()}

    def _gitraft_services(self) -> dict[str, dict[str, Any]]:
        return {
            n: s for n, s in self.compose["services"].items() if str(s.get("image", "")).startswith("gitraft")
        }

    def _host_owners(self) -> dict[str, str]:
        """Every name a service answers to on a compose network -> the service."""
        owners: dict[str, str] = {}
        for name, spec in self.compose["services"].items():
            owners[name] = name
            if spec.get("hostname"):
                owners[spec["hostname"]] = name
            networks = spec.get("networks") or {}
            if isinstance(networks, dict):
                for net in networks.values():
                    for alias in (net or {}).get("aliases", []):
                        owners[alias] = name
        return owners

    def port(self, service: str, container_port: int) -> int:
        """The loopback port standing for `service`'s `container_port`."""
        key = (service, container_port)
        if key not in self.ports:
            self.ports[key] = free_port()  # never one handed out before
        return self.ports[key]

    def address(self, service: str, container_port: int) -> str:
        return f"127.0.0.1:{self.port(service, container_port)}"

    def render(self, service: str, text: str) -> str:
        """`text` with addresses, secrets and volume paths remapped for `service`."""

        def address(match: re.Match[str]) -> str:
            host, port = match.group(1), int(match.group(2))
            if host in {"0.0.0.0", "127.0.0.1"}:
                return self.address(service, port)
            if host in self.owners:
                return self.address(self.owners[host], port)
            return match.group(0)

        text = ADDRESS.sub(address, text)
        text = SECRET.sub(lambda m: str(self._secret_file(m.group(1))), text)
        for mount, local in self._volume_dirs(service).items():
            text = re.sub(rf"(?<![\w/]){re.escape(mount)}(?=[/\"'\s]|$)", str(local), text)
        return text

    def _secret_file(self, name: str) -> Path:
        path = self.workdir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.secrets[name] + "\n")
        return path

    def secret(self, name: str) -> str:
        return self.secrets[name]

    def _volume_dirs(self, service: str) -> dict[str, Path]:
        """Container path of each named volume of `service` -> its local directory."""
        out: dict[str, Path] = {}
        for volume in self.compose["services"][service].get("volumes", []):
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/")):
                out[target] = self.workdir / service / "volumes" / source
                out[target].mkdir(parents=True, exist_ok=True)
        return out

    def _bind_mounts(self, service: str) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for volume in self.compose["services"][service].get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                out[target] = (self.root / source).resolve()
        return out

    def _service(self, name: str, spec: dict[str, Any]) -> LocalService:
        entry = list(spec.get("entrypoint") or [])
        command = list(spec.get("command") or [])
        argv: list[str] = []
        config_files: dict[str, Path] = {}
        for arg in [*entry, *command]:
            argv.append(self._local_arg(name, arg, config_files))
        assert argv[0] == "gitraft", f"{name}: entrypoint {entry!r} is not the gitraft entry point"
        argv = [str(Path(sys.executable).parent / "gitraft"), *argv[1:]]
        test = list(spec["healthcheck"]["test"])
        assert test[0] == "CMD" and test[1] == "gitraft-healthcheck", f"{name}: unexpected healthcheck"
        health = [sys.executable, str(REPO_ROOT / "deploy" / "healthcheck.py")]
        health += [self.render(name, a) for a in test[2:]]
        depends = spec.get("depends_on") or []
        return LocalService(name, argv, health, list(depends), config_files=config_files)

    def _local_arg(self, service: str, arg: str, config_files: dict[str, Path]) -> str:
        """A command-line argument: a path under a bind mount becomes its rendered copy."""
        for target, source in self._bind_mounts(service).items():
            if arg.startswith(target + "/"):
                original = source / arg[len(target) + 1 :]
                rendered = self.workdir / service / "etc" / original.name
                rendered.parent.mkdir(parents=True, exist_ok=True)
                rendered.write_text(self.render(service, original.read_text()))
                config_files[arg] = rendered
                return str(rendered)
        return self.render(service, arg)

    def start_waves(self) -> list[list[str]]:
        """Services grouped by dependency depth: a wave depends only on earlier ones."""
        depth: dict[str, int] = {}

        def of(name: str, seen: tuple[str, ...] = ()) -> int:
            assert name not in seen, f"dependency cycle through {name}"
            if name not in depth:
                deps = [d for d in self.services[name].depends_on if d in self.services]
                depth[name] = 1 + max((of(d, (*seen, name)) for d in deps), default=-1)
            return depth[name]

        for name in self.services:
            of(name)
        return [sorted(n for n, d in depth.items() if d == k) for k in range(max(depth.values()) + 1)]

    def start(self, timeout: float = 120.0) -> None:
        """Start every service, a dependency wave at a time; a wave waits until its
        services pass their health check before the next starts."""
        for wave in self.start_waves():
            for name in wave:
                service = self.services[name]
                service.process = ManagedProcess(
                    name, service.argv, self.workdir / name / f"{name}.log", cwd=self.workdir / name
                )
                service.process.spawn()
            for name in wave:
                self.wait_healthy(name, timeout)

    def wait_healthy(self, name: str, timeout: float) -> None:
        """Run the service's compose health check until it passes."""
        service = self.services[name]
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert service.process is not None
            if not service.process.alive():
                raise RuntimeError(f"{name} exited; log:\n{service.process.log_text(3000)}")
            done = subprocess.run(
                service.health, capture_output=True, text=True, env=child_env(), timeout=30, check=False
            )
            if done.returncode == 0:
                return
            last = done.stderr.strip()
            time.sleep(0.3)
        assert service.process is not None
        raise TimeoutError(
            f"{name} not healthy after {timeout:g}s ({last}); log:\n{service.process.log_text(3000)}"
        )

    def stop(self) -> None:
        for name in [n for wave in reversed(self.start_waves()) for n in wave]:
            process = self.services[name].process
            if process is not None:
                process.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {n}\n{s.process.log_text(2000)}" for n, s in self.services.items() if s.process is not None
        )
