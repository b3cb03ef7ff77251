"""Running one server process (a node, a proxy) in the foreground.

`run_server` is the life of the process: read its TOML config (exit code 2 and one
line on stderr when it cannot be used), set up logging, start the server, serve until
SIGINT or SIGTERM, stop it. A server that cannot start is stopped again and the
process exits 1 with the reason on stderr; a signal while it starts stops it cleanly.
`main` is the `python -m <package> --config FILE` entry point around it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from common.config import ConfigError
from common.errors import GitraftError
from common.logs import setup_logging

log = logging.getLogger(__name__)


class Configured(Protocol):
    log_level: str


class Server(Protocol):
    async def start(self) -> object: ...

    async def stop(self) -> None: ...


C = TypeVar("C", bound=Configured)


async def run_server(
    role: str, config_path: str, load: Callable[[str], C], build: Callable[[C], Server]
) -> int:
    """Serve the `role` ("node", "proxy") configured in `config_path` until a signal;
    returns the exit code (0; 1: could not start; 2: bad config)."""
    try:
        config = load(config_path)
    except ConfigError as exc:
        print(f"gitraft {role}: {exc}", file=sys.stderr)
        return 2
    setup_logging(role, config.log_level)
    server = build(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(server.start())
    stopping = asyncio.create_task(stop.wait())
    code = 0
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        failure = starting.exception() if starting.done() else None
        if failure is not None:
            log.error(f"{role} failed to start", extra={"error": str(failure)})
            print(f"gitraft {role}: cannot start: {failure}", file=sys.stderr)
            code = 1
        else:
            await stopping
    finally:
        starting.cancel()
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError, GitraftError, OSError):
            await starting
        await server.stop()
    return code


def main(
    role: str, description: str, run: Callable[[str], Coroutine[Any, Any, int]], argv: list[str] | None
) -> int:
    """`python -m ... --config FILE`: parse `argv` and return `run(FILE)`'s exit code."""
    parser = argparse.ArgumentParser(prog=f"gitraft {role}", description=description)
    parser.add_argument("--config", required=True, help=f"{role} TOML file, e.g. {role}.toml")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.config))
