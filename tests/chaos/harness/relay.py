"""A fault-injecting TCP relay on 127.0.0.1 (asyncio, in a background thread).

Every cluster process that others connect to (a node's gRPC port, a proxy's Raft port)
gets a *front*: a relay port that forwards to the real one. Processes are configured
with the fronts' addresses, so every proxy->node, node->node and proxy<->proxy (Raft)
connection passes through a relay. The relay knows both ends of each connection by
name: the server is the front's process, the client is found by who owns the
connecting socket (its process group, looked up in /proc), so a fault can target one
pair of processes in one direction.

Faults, between a source process and a destination process (either may be "*"):
- `block(src, dst)`: bytes from src to dst are held, not forwarded, until healed (a
  one-way partition; TCP cannot lose bytes silently, so a held byte models a packet the
  kernel keeps retransmitting; the endpoints see silence, then their own timeouts);
- `delay(src, dst, seconds, jitter)`: every chunk from src to dst waits that long;
- `drop(src, dst, probability)`: a chunk from src to dst resets the connection with
  that probability (the endpoint sees a connection reset, as after a lost segment that
  made a middlebox give up);
- `heal()`: every fault removed; held bytes flow again.

Loopback only; the relay owns no process and stops with `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
CHUNK = 64 * 1024
ANY = "*"


@dataclass
class _Faults:
    blocked: set[tuple[str, str]] = field(default_factory=set)
    delays: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    drops: dict[tuple[str, str], float] = field(default_factory=dict)

    @staticmethod
    def _keys(src: str, dst: str) -> list[tuple[str, str]]:
        return [(src, dst), (src, ANY), (ANY, dst), (ANY, ANY)]

    def is_blocked(self, src: str, dst: str) -> bool:
        return any(k in self.blocked for k in self._keys(src, dst))

    def delay(self, src: str, dst: str) -> tuple[float, float]:
        for k in self._keys(src, dst):
            if k in self.delays:
                return self.delays[k]
        return (0.0, 0.0)

    def drop(self, src: str, dst: str) -> float:
        return max((self.drops.get(k, 0.0) for k in self._keys(src, dst)), default=0.0)


GONE = -1


def socket_owner_pgid(client_port: int, server_port: int, pgids: set[int]) -> int | None:
    """The process group (among `pgids`) that owns the loopback socket
    127.0.0.1:client_port -> 127.0.0.1:server_port; GONE when the client already
    closed it, None when no process of `pgids` owns it."""
    # gRPC's sockets are IPv6 ones connected to ::ffff:127.0.0.1: look in both tables.
    local, remote = f":{client_port:04X}", f":{server_port:04X}"
    inode = ""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f:
                parts = line.split()
                if len(parts) > 9 and parts[1].endswith(local) and parts[2].endswith(remote):
                    inode = parts[9]
                    break
        if inode:
            break
    if not inode or inode == "0":
        return GONE
    target = f"socket:[{inode}]"
    # The cluster processes themselves first (cheap), then every process.
    candidates = [str(p) for p in sorted(pgids)]
    owner = _fd_owner(target, candidates) or _fd_owner(
        target, [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    )
    # The owner may be a child (git) of a cluster process: climb to a known group.
    while owner is not None and owner > 1:
        try:
            fields = Path(f"/proc/{owner}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        ppid, pgid = int(fields[1]), int(fields[2])
        if pgid in pgids:
            return pgid
        owner = ppid
    return None


def _fd_owner(target: str, pids: list[str]) -> int | None:
    """The first of `pids` with an open file descriptor that links to `target`."""
    for pid in pids:
        try:
            fds = os.scandir(f"/proc/{pid}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) == target:
                        return int(pid)
                except OSError:
                    continue
    return None


@dataclass
class Front:
    """One relay listening port in front of one process's port."""

    name: str
    target_port: int
    port: int = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


class RelayNet:
    """Every front, their connections and the faults between named processes.

        net = RelayNet(owners=lambda: {pgid: name, ...}, seed=1)
        front = net.add_front("node-a", 23001)   # listens on front.address
        net.block("proxy-1", "node-a"); ...; net.heal()
        net.close()

    `owners()` maps a process group id to a process name (called on every new
    connection); a client not found is named "client".
    """

    def __init__(self, owners: Callable[[], dict[int, str]], seed: int = 0) -> None:
        self.owners = owners
        self.faults = _Faults()
        self.rng = random.Random(seed)
        self.fronts: dict[str, Front] = {}
        self.connections = 0
        self.pairs: dict[tuple[str, str], int] = {}
        self.resets = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._thread.start()

    # -- set-up --------------------------------------------------------------------------

    def add_front(self, name: str, target_port: int) -> Front:
        """A relay port in front of 127.0.0.1:`target_port` (process `name`)."""
        front = Front(name, target_port)

        async def start() -> int:
            server = await asyncio.start_server(
                lambda r, w: self._accept(front, r, w), HOST, 0, reuse_address=True
            )
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        front.port = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        self.fronts[name] = front
        return front

    def close(self) -> None:
        """Stop listening, drop every connection, stop the thread."""

        async def stop() -> None:
            for server in self._servers:
                server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    # -- faults --------------------------------------------------------------------------

    def block(self, src: str, dst: str) -> None:
        with self._lock:
            self.faults.blocked.add((src, dst))

    def partition(self, side_a: list[str], side_b: list[str]) -> None:
        """Block both ways between every process of `side_a` and every one of `side_b`."""
        with self._lock:
            for a in side_a:
                for b in side_b:
                    self.faults.blocked.add((a, b))
                    self.faults.blocked.add((b, a))

    def delay(self, src: str, dst: str, seconds: float, jitter: float = 0.0) -> None:
        with self._lock:
            self.faults.delays[(src, dst)] = (seconds, jitter)

    def drop(self, src: str, dst: str, probability: float) -> None:
        with self._lock:
            self.faults.drops[(src, dst)] = probability

    def heal(self) -> None:
        with self._lock:
            self.faults = _Faults()

    # -- forwarding ----------------------------------------------------------------------

    async def _identify(self, writer: asyncio.StreamWriter, front: Front) -> str | None:
        """The name of the client process; None when it already closed the connection."""
        peer = writer.get_extra_info("peername")
        owners = self.owners()
        pgid = await asyncio.to_thread(socket_owner_pgid, int(peer[1]), front.port, set(owners))
        if pgid == GONE:
            return None
        return owners.get(pgid, "client") if pgid is not None else "client"

    async def _accept(self, front: Front, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            # Identify the client while bytes already flow: a client whose handshake
            # waited for the /proc lookup could time out (gRPC does, on a busy machine).
            ident = asyncio.ensure_future(self._identify(writer, front))
            up_reader, up_writer = await asyncio.open_connection(HOST, front.target_port)
            self.connections += 1
            pumps = [
                asyncio.ensure_future(
                    self._pump(reader, up_writer, ident, front.name, writer, outbound=True)
                ),
                asyncio.ensure_future(
                    self._pump(up_reader, writer, ident, front.name, up_writer, outbound=False)
                ),
                asyncio.ensure_future(self._count(ident, front.name)),
            ]
            try:
                pending: set[asyncio.Future[bool]] = set(pumps)
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    if any(d.exception() is not None or not d.result() for d in done):
                        break  # a reset or an error: drop the whole connection
            finally:
                for p in pumps:
                    p.cancel()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
            self._tasks.discard(task)

    async def _count(self, ident: asyncio.Future[str | None], server: str) -> bool:
        client = await ident
        if client is None:
            return False  # the client already closed it
        self.pairs[(client, server)] = self.pairs.get((client, server), 0) + 1
        return True

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ident: asyncio.Future[str | None],
        server: str,
        other: asyncio.StreamWriter,
        outbound: bool,
    ) -> bool:
        """Copy one direction chunk by chunk under the faults of the moment (client ->
        server when `outbound`); True at a clean end of stream (half-closed: the other
        direction may go on), False on a reset. The client's name is "?" until it is
        identified, except while a block is in force: then a chunk waits for it."""
        while True:
            try:
                data = await reader.read(CHUNK)
            except OSError:
                return False
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return True
            client = await ident or "?" if ident.done() or self.faults.blocked else "?"
            src, dst = (client, server) if outbound else (server, client)
            while self.faults.is_blocked(src, dst):  # noqa: ASYNC110 - faults change in another thread
                await asyncio.sleep(0.05)
            seconds, jitter = self.faults.delay(src, dst)
            if seconds or jitter:
                await asyncio.sleep(max(0.0, seconds + self.rng.uniform(-jitter, jitter)))
            probability = self.faults.drop(src, dst)
            if probability and self.rng.random() < probability:
                self.resets += 1
                for w in (writer, other):
                    transport = w.transport
                    transport.abort()
                return False
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                return False
