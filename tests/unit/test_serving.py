"""common.serving: the life of a node or proxy process, with a stand-in server."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass, field

import pytest

from common import serving
from common.config import ConfigError
from common.serving import run_server


@dataclass
class Config:
    log_level: str = "info"


@dataclass
class StandIn:
    """Records its life; `fail` makes start raise it."""

    fail: BaseException | None = None
    events: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> int:
        self.events.append("start")
        self.started.set()
        if self.fail is not None:
            raise self.fail
        return 1234

    async def stop(self) -> None:
        self.events.append("stop")


@pytest.fixture(autouse=True)
def no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_server sets up JSON logging; not this test process's."""
    monkeypatch.setattr(serving, "setup_logging", lambda *_args: None)


def load_ok(path: str) -> Config:
    return Config()


def load_bad(path: str) -> Config:
    raise ConfigError(f"config file not found: {path!r}")


async def test_a_bad_config_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    server = StandIn()
    assert await run_server("node", "missing.toml", load_bad, lambda _c: server) == 2
    assert capsys.readouterr().err == "gitraft node: config file not found: 'missing.toml'\n"
    assert server.events == []


async def test_a_server_that_cannot_start_is_stopped_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    server = StandIn(fail=OSError("cannot listen on '127.0.0.1:1'"))
    assert await run_server("node", "n.toml", load_ok, lambda _c: server) == 1
    assert server.events == ["start", "stop"]
    assert capsys.readouterr().err == "gitraft node: cannot start: cannot listen on '127.0.0.1:1'\n"


async def test_sigterm_stops_a_serving_server_with_exit_0() -> None:
    server = StandIn()
    running = asyncio.create_task(run_server("proxy", "p.toml", load_ok, lambda _c: server))
    await asyncio.wait_for(server.started.wait(), 30)
    await asyncio.sleep(0)  # let the start task finish
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(running, 30) == 0
    assert server.events == ["start", "stop"]
