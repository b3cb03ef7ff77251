"""The nemesis: a seeded, bounded schedule of faults, and the thread that applies it.

A schedule is a list of `Fault`s decided up front by `schedule(seed, seconds, kinds,
...)`: the same seed gives the same schedule. Targets named by role ("leader": the Raft
leader, "primary": the primary node of the repository under test) are resolved when
the fault starts and the resolved name is recorded in the history; a fault of the
primary waits (up to 10 s) for a moment when every replica is up to date, so that the
primary can fail over while writes are in flight to it. Faults never
overlap: one starts, lasts `duration` seconds, heals (resume, restart, relay healed),
and the next starts after a quiet gap; so at most one process is down at a time.

Kinds:
- `kill-node`, `kill-proxy`, `kill-leader`, `kill-primary`: SIGKILL, restart after
  `duration` (same ports and data);
- `pause-node`, `pause-proxy`, `pause-leader`, `pause-primary`: SIGSTOP, SIGCONT after
  `duration` (the process group: git children too);
- `partition-proxy-nodes`: one proxy cut from every node (both ways);
- `partition-leader`: the Raft leader cut from the other proxies;
- `partition-primary`: the primary node cut from every proxy and node;
- `oneway`: bytes from one process to another held (one direction only);
- `delay`: every byte to one process delayed (50-300 ms, jitter);
- `drop`: connections to one process reset with a small probability per chunk.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.harness.history import History
from tests.chaos.harness.topology import ChaosCluster

PROCESS_KINDS = ("kill-node", "kill-proxy", "kill-leader", "kill-primary")
PAUSE_KINDS = ("pause-node", "pause-proxy", "pause-leader", "pause-primary")
PARTITION_KINDS = ("partition-proxy-nodes", "partition-leader", "partition-primary")
NET_KINDS = ("oneway", "delay", "drop")
ALL_KINDS = PROCESS_KINDS + PAUSE_KINDS + PARTITION_KINDS + NET_KINDS
GROUPS = {"kill": PROCESS_KINDS, "pause": PAUSE_KINDS, "partition": PARTITION_KINDS, "net": NET_KINDS}


@dataclass
class Fault:
    at: float
    kind: str
    duration: float
    target: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = f" {self.params}" if self.params else ""
        target = self.target or "-"
        return f"t+{self.at:6.2f}s {self.kind:<22} target={target:<8} for {self.duration:.2f}s{extra}"


def schedule(
    seed: int,
    seconds: float,
    kinds: tuple[str, ...] = ALL_KINDS,
    proxies: tuple[str, ...] = ("proxy-1", "proxy-2", "proxy-3"),
    nodes: tuple[str, ...] = ("node-a", "node-b", "node-c"),
    start: float = 2.0,
) -> list[Fault]:
    """The faults of a run of `seconds`, from `seed` alone."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    t = start
    everyone = proxies + nodes
    while True:
        kind = rng.choice(kinds)
        duration = round(rng.uniform(2.0, 8.0), 2)
        if t + duration > seconds:
            break
        fault = Fault(round(t, 2), kind, duration)
        if kind in ("kill-node", "pause-node"):
            fault.target = rng.choice(nodes)
        elif kind in ("kill-proxy", "pause-proxy", "partition-proxy-nodes"):
            fault.target = rng.choice(proxies)
        elif kind.endswith("-leader"):
            fault.target = "leader"
        elif kind.endswith("-primary"):
            fault.target = "primary"
        elif kind == "oneway":
            src = rng.choice(everyone)
            fault.target = src
            fault.params = {"to": rng.choice([p for p in everyone if p != src])}
        elif kind == "delay":
            fault.target = rng.choice(everyone)
            fault.params = {
                "seconds": round(rng.uniform(0.05, 0.3), 3),
                "jitter": round(rng.uniform(0.0, 0.05), 3),
            }
        elif kind == "drop":
            fault.target = rng.choice(everyone)
            fault.params = {"probability": round(rng.uniform(0.01, 0.1), 3)}
        faults.append(fault)
        t += duration + rng.uniform(1.0, 4.0)
    return faults


class Nemesis(threading.Thread):
    """Applies a schedule to a ChaosCluster, recording every action in the history."""

    def __init__(
        self,
        chaos: ChaosCluster,
        faults: list[Fault],
        history: History,
        relative_path: str,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="nemesis", daemon=True)
        self.chaos = chaos
        self.faults = faults
        self.history = history
        self.relative_path = relative_path
        self.stop_event = stop
        self.applied: list[str] = []
        self.failed_restarts: list[str] = []
        self.crash: BaseException | None = None

    def _resolve(self, fault: Fault) -> str | None:
        if fault.target == "leader":
            return self.chaos.leader()
        if fault.target == "primary":
            self._wait_replicated()
            return self.chaos.primary(self.relative_path)
        return fault.target

    def _wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for a moment when every assigned replica is up to date, so a
        fault of the primary can fail over (the elector needs an up-to-date replica)
        while writes started since are in flight to it: the fencing fault's shape."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop_event.is_set():
            try:
                repo = self.chaos.cluster.repository(self.relative_path, timeout=2.0)
            except Exception:
                repo = None
            if repo is not None and all(r.generation == repo.generation for r in repo.replicas):
                return
            time.sleep(0.02)

    def run(self) -> None:
        try:
            for fault in self.faults:
                delay = self.history.t0 + fault.at - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    return
                if self.stop_event.is_set():
                    return
                self.apply(fault)
        except BaseException as exc:
            self.crash = exc
        finally:
            self.heal()

    def apply(self, fault: Fault) -> None:
        target = self._resolve(fault)
        if target is None:
            self.history.event("nemesis", "skip", fault=str(fault), reason="role not found")
            return
        chaos, net = self.chaos, self.chaos.net
        proxies = list(chaos.cluster.proxies)
        nodes = list(chaos.cluster.nodes)
        kind = fault.kind
        self.history.event("nemesis", "start", fault=kind, target=target, **fault.params)
        self.applied.append(f"{fault} -> {target}")
        if kind.startswith("kill-"):
            chaos.kill(target)
        elif kind.startswith("pause-"):
            chaos.pause(target)
        elif kind == "partition-proxy-nodes":
            net.partition([target], nodes)
        elif kind == "partition-leader":
            net.partition([target], [p for p in proxies if p != target])
        elif kind == "partition-primary":
            net.partition([target], [p for p in proxies + nodes if p != target])
        elif kind == "oneway":
            net.block(target, fault.params["to"])
        elif kind == "delay":
            net.delay("*", target, fault.params["seconds"], fault.params["jitter"])
        elif kind == "drop":
            net.drop("*", target, fault.params["probability"])
        self.stop_event.wait(fault.duration)
        if kind.startswith("kill-"):
            self._restart(target)
        elif kind.startswith("pause-"):
            chaos.resume(target)
        else:
            net.heal()
        self.history.event("nemesis", "heal", fault=kind, target=target)

    def _restart(self, name: str, attempts: int = 3) -> bool:
        """Start `name` again; a start that fails (e.g. a proxy that cannot commit its
        first command on a loaded machine exits) is retried. False when it never
        came back (recorded in the history)."""
        for attempt in range(attempts):
            try:
                self.chaos.restart(name)
                return True
            except RuntimeError as exc:
                self.history.event(
                    "nemesis", "restart-failed", target=name, attempt=attempt, error=str(exc)[-300:]
                )
        self.failed_restarts.append(name)
        return False

    def heal(self) -> None:
        """Everything back: relay healed, paused processes resumed, dead ones restarted."""
        self.chaos.net.heal()
        self.chaos.resume_all()
        for name in [*self.chaos.cluster.nodes, *self.chaos.cluster.proxies]:
            if not self.chaos.cluster.process(name).alive():
                self.history.event("nemesis", "restart", target=name)
                self._restart(name)
