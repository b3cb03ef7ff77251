"""Shared helpers for unit tests that run against the real state machine (LocalStore)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from tests.unit.test_router_coordinator import NOW, LocalStore

STORAGES = ("a", "b", "c")


def numeric_address(name: str) -> str:
    return f"127.0.0.1:{ord(name)}"


@asynccontextmanager
async def local_store(
    data_dir: Path,
    address: Callable[[str], str] = numeric_address,
    healthy: Callable[[str], bool] | None = None,
    now: float = NOW,
) -> AsyncIterator[LocalStore]:
    """A started LocalStore with storages a, b and c registered (each, if `healthy` is
    given, followed by proxy p1's health vote for it at `now`); stopped on exit."""
    s = LocalStore(data_dir)
    await s.start()
    for name in STORAGES:
        await s.register_storage(name, address(name))
        if healthy is not None:
            await s.record_health("p1", name, healthy(name), now)
    try:
        yield s
    finally:
        await s.stop()
