"""A stand-alone metadata member for tests and benchmarks: `python -m cluster.testing.raft_member --config F`.

Runs one `RaftMetadataStore` and a line-based JSON control port on localhost:

    -> {"method": "register_storage", "args": {"name": "a", "address": "x"}}
    <- {"ok": null}
    <- {"error": "UnavailableError", "message": "no quorum: ..."}

Methods: every `MetadataStore` command and query (by name, keyword arguments), plus
`status`, `barrier`, `submit` (op, args, command_id: a raw command, e.g. a retry with
the same id), `compact` (force log compaction), `raft_status` (pysyncobj's own) and
`dump_state` (every row of every table, to compare members), `gather` (calls run
concurrently here, one every `spacing` seconds) and `bench` (count, concurrency: commit
latencies measured inside this process). The config file:

    control_addr = "127.0.0.1:7101"
    [raft]
    self_addr = "127.0.0.1:7001"
    ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cluster.metadata import commands, schema
from cluster.metadata.api import MetadataStore
from cluster.metadata.config import RaftConfig
from cluster.metadata.store import RaftMetadataStore
from common.config import load_config

log = logging.getLogger("cluster.testing.raft_member")

# Methods passed through to the store: every declared command, every query of the
# `MetadataStore` contract (`status` and the lifecycle are handled or refused apart),
# and the raw `submit`.
COMMANDS = (
    set(commands.REGISTRY)
    | {name for name, value in vars(MetadataStore).items() if callable(value) and not name.startswith("_")}
    | {"submit"}
) - {"start", "stop", "status", "is_leader"}


@dataclass
class MemberConfig:
    control_addr: str = "127.0.0.1:7101"
    log_level: str = "info"
    raft: RaftConfig = field(default_factory=RaftConfig)


def to_json(value: Any) -> Any:
    """Dataclasses, enums, sets and tuple-keyed dicts as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        if any(isinstance(k, tuple) for k in value):
            return [[*k, to_json(v)] for k, v in sorted(value.items())]
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(to_json(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


class Member:
    def __init__(self, config: MemberConfig) -> None:
        self.config = config
        self.store = RaftMetadataStore(config.raft)

    async def call(self, method: str, args: dict[str, Any]) -> Any:
        if method == "status":
            return self.store.status()
        if method == "raft_status":
            return {k: str(v) for k, v in self.store.raft.status().items()}
        if method == "compact":
            self.store.raft.force_compaction()
            return None
        if method == "queue_depth":
            return await self.store.queue_depth()
        if method == "dump_state":
            return await self._dump_state()
        if method == "bench":
            return await self._bench(**args)
        if method == "gather":
            return await self._gather(**args)
        if method not in COMMANDS:
            raise ValueError(f"unknown method {method!r}")
        return await getattr(self.store, method)(**args)

    async def _bench(self, count: int, concurrency: int) -> dict[str, Any]:
        """Submit `count` record_health commands from `concurrency` tasks in this process;
        returns each command's latency (seconds) and the wall time of the whole run."""
        loop = asyncio.get_running_loop()
        latencies: list[float] = []
        counter = iter(range(count))

        async def worker() -> None:
            for i in counter:
                t0 = loop.time()
                await self.store.record_health("bench", f"s{i % 50}", i % 2 == 0, float(i))
                latencies.append(loop.time() - t0)

        start = loop.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return {"latencies": latencies, "seconds": loop.time() - start}

    async def _gather(self, calls: list[dict[str, Any]], spacing: float = 0.0) -> list[dict[str, Any]]:
        """Run `calls` concurrently, starting one every `spacing` seconds; each outcome as
        {"ok": result} or {"error": class name, "message": text}."""

        async def one(i: int, call: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(i * spacing)
            try:
                return {"ok": to_json(await self.call(call["method"], call.get("args") or {}))}
            except Exception as exc:
                return {"error": type(exc).__name__, "message": str(exc)}

        return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(calls))))

    async def _dump_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for table in schema.STATE_TABLES:
            rows = await self.store.db.execute_fetchall(f"SELECT * FROM {table} ORDER BY 1, 2")
            out[table] = [list(r) for r in rows]
        return out

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    result = await self.call(request["method"], request.get("args") or {})
                    reply: dict[str, Any] = {"ok": to_json(result)}
                except Exception as exc:
                    reply = {"error": type(exc).__name__, "message": str(exc)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def run(self) -> None:
        await self.store.start()
        host, port = self.config.control_addr.rsplit(":", 1)
        server = await asyncio.start_server(self.handle, host, int(port))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("member %s serving control on %s", self.config.raft.self_addr, self.config.control_addr)
        try:
            await stop.wait()
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
            await self.store.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.testing.raft_member", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", required=True, help="TOML file: control_addr and a [raft] table")
    ns = parser.parse_args(argv)
    config = load_config(ns.config, MemberConfig)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(Member(config).run())


if __name__ == "__main__":
    main()
