"""Metadata agreement: every proxy's state machine is identical at the same applied
Raft index.

`MetadataObserver` reads each proxy's SQLite database (`<data_dir>/raft/state.db`, WAL
mode, so a read-only reader never blocks the proxy) in one read transaction: the
applied index (`meta.applied_index`), a digest of every table and every replica's
generation. It samples all proxies every `interval` seconds during the run and after
it; `agreement` compares the digests observed at equal indices, and checks that on each
proxy no replica's generation decreased as the applied index grew (invariant 3).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

from tests.chaos.harness.checkers import Anomaly

Generations = dict[tuple[str, str], int]


def state_digest(db_path: Path) -> tuple[int, str, Generations] | None:
    """(applied index, sha256 of every table's rows in order, {(repository, storage):
    generation}) of a state database, in one read transaction; None when it cannot be
    read right now (e.g. being rebuilt)."""
    if not db_path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return None
    try:
        conn.execute("BEGIN")
        row = conn.execute("SELECT value FROM meta WHERE key = 'applied_index'").fetchone()
        if row is None:
            return None
        digest = hashlib.sha256()
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master"
                " WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for table in tables:
            digest.update(f"\x00{table}\x00".encode())
            for r in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2'):
                digest.update(repr(r).encode())
        generations = {}
        if "replicas" in tables:
            rows = conn.execute("SELECT repository_id, storage, generation FROM replicas")
            generations = {(str(r), str(s)): int(g) for r, s, g in rows}
        return int(row[0]), digest.hexdigest(), generations
    except sqlite3.Error:
        return None
    finally:
        conn.close()


class MetadataObserver(threading.Thread):
    """Samples every proxy's (applied index, digest) until `stop` is set.
    `observations[index][proxy] = digest`."""

    def __init__(self, databases: dict[str, Path], stop: threading.Event, interval: float = 0.5) -> None:
        super().__init__(name="metadata-observer", daemon=True)
        self.databases = databases
        self.stop_event = stop
        self.interval = interval
        self.observations: dict[int, dict[str, str]] = {}
        self.samples = 0
        self.lock = threading.Lock()
        self.last: dict[str, tuple[int, Generations]] = {}
        self.decreases: list[str] = []

    def sample(self) -> None:
        for proxy, path in self.databases.items():
            seen = state_digest(path)
            if seen is None:
                continue
            index, digest, generations = seen
            with self.lock:
                previous = self.last.get(proxy)
                if previous is not None and previous[0] <= index:
                    for key, generation in previous[1].items():
                        if key in generations and generations[key] < generation:
                            self.decreases.append(
                                f"{proxy}: replica {key[1]} of {key[0]} went from generation {generation}"
                                f" (index {previous[0]}) to {generations[key]} (index {index})"
                            )
                self.last[proxy] = (index, generations)
                self.samples += 1
                self.observations.setdefault(index, {})
                # Keep a disagreement visible: never overwrite a different digest.
                self.observations[index].setdefault(proxy, digest)
                if self.observations[index][proxy] != digest:
                    self.observations[index][f"{proxy}@again"] = digest

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def compared(self) -> int:
        """How many indices were observed on two proxies or more."""
        with self.lock:
            return sum(1 for by_proxy in self.observations.values() if len(by_proxy) > 1)


def agreement(observer: MetadataObserver) -> list[Anomaly]:
    anomalies = [Anomaly("metadata", d) for d in observer.decreases]
    with observer.lock:
        for index, by_proxy in sorted(observer.observations.items()):
            if len(set(by_proxy.values())) > 1:
                digests = ", ".join(f"{p}={d[:12]}" for p, d in sorted(by_proxy.items()))
                anomalies.append(
                    Anomaly("metadata", f"state machines differ at applied index {index}: {digests}")
                )
    return anomalies


def open_intents(db_path: Path) -> int | None:
    """How many write intents are open (not finished, not repaired) in a proxy's state
    database; None when it cannot be read right now."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return None
    try:
        return int(conn.execute("SELECT count(*) FROM write_intents WHERE result IS NULL").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()
