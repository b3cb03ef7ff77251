"""Entry point of one proxy process: serve until SIGINT/SIGTERM, then stop cleanly
(common.serving)."""

from __future__ import annotations

from cluster.config import load_proxy_config
from cluster.proxy.server import ProxyServer
from common import serving


async def run_proxy(config_path: str) -> int:
    """Serve until a signal; returns the exit code (2: bad config, 1: could not start)."""
    return await serving.run_server("proxy", config_path, load_proxy_config, ProxyServer)


def main(argv: list[str] | None = None) -> int:
    return serving.main("proxy", "Run one routing proxy.", run_proxy, argv)
