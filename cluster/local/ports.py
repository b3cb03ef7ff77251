"""Loopback ports for the local-cluster launcher and the test harness.

A port chosen here is bound later by a child process, so it must stay free in between.
Two things used to take it meanwhile, and both are ruled out:

- *Outgoing connections.* The kernel gives every outgoing connection a source port from
  its ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 on Linux):
  a port picked by binding port 0 lies in that range, and pysyncobj's reconnect loop or
  any client could take it before the child binds. Ports here come from below that range
  (`low` .. the range's start), where the kernel never picks source ports.
- *This process handing the same port out twice.* Every port returned is remembered
  (process-wide, thread-safe) and never returned again by this process.

What is left is another process choosing the same port at the same moment; the choice
is random over ~12,000 ports and checked free right before it is returned.

`refused_address()` is for "nothing listens here": a socket bound and never listening,
held for the duration, so connecting to it is refused at once and no other process can
start listening on it meanwhile.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"
# Lowest port handed out; the highest is just below the kernel's ephemeral range.
LOW = 20000
_DEFAULT_EPHEMERAL_START = 32768

_lock = threading.Lock()
_handed_out: set[int] = set()
_rng = random.Random()


class NoFreePortError(Exception):
    """No free port (block) was found below the ephemeral range in a bounded search."""


def ephemeral_start(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_START


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a listening socket could bind `host:port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(count: int, low: int = LOW, high: int | None = None) -> list[int]:
    """`count` consecutive ports in [low, high) that are free now and were never handed
    out by this process, at a random place; raises NoFreePortError after a bounded search.

    `high` defaults to the start of the kernel's ephemeral range."""
    top = ephemeral_start() if high is None else high
    if count < 1 or top - low <= count:
        raise NoFreePortError(f"no room for {count} ports in [{low}, {top})")
    for _ in range(200):
        base = _rng.randrange(low, top - count)
        block = list(range(base, base + count))
        with _lock:
            if _handed_out.intersection(block):
                continue
            if all(port_is_free(p) for p in block):
                _handed_out.update(block)
                return block
    raise NoFreePortError(f"found no {count} free consecutive ports in [{low}, {top})")


def free_port() -> int:
    """One port below the ephemeral range, free now, never handed out before here."""
    return free_port_block(1)[0]


@contextlib.contextmanager
def refused_address(host: str = HOST) -> Iterator[str]:
    """`host:port` of a socket that is bound but never listens, for as long as the
    context lasts: a connection to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, free_port()))
        yield f"{host}:{s.getsockname()[1]}"
