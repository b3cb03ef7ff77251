"""Entry point of one proxy process: serve until SIGINT/SIGTERM, then stop cleanly."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from cluster.config import load_proxy_config
from cluster.proxy.server import ProxyServer
from common.config import ConfigError
from common.errors import GitraftError
from common.logs import setup_logging

log = logging.getLogger(__name__)


async def run_proxy(config_path: str) -> int:
    """Serve until a signal; returns the exit code (2: bad config, 1: could not start)."""
    try:
        config = load_proxy_config(config_path)
    except ConfigError as exc:
        print(f"gitraft proxy: {exc}", file=sys.stderr)
        return 2
    setup_logging("proxy", config.log_level)
    server = ProxyServer(config)
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
            log.error("proxy failed to start", extra={"error": str(failure)})
            print(f"gitraft proxy: cannot start: {failure}", file=sys.stderr)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gitraft proxy", description="Run one routing proxy.")
    parser.add_argument("--config", required=True, help="proxy TOML file, e.g. proxy.toml")
    args = parser.parse_args(argv)
    return asyncio.run(run_proxy(args.config))
