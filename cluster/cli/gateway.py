"""`gitraft gateway`: a standalone git smart-HTTP gateway in front of one gRPC server.

Serves `http://LISTEN/<path>.git` for the stock git client, forwarding to the
SmartHTTPService at `--upstream` (a node, or a proxy). Runs in the foreground until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

EXAMPLE = """example:
  gitraft gateway --upstream 127.0.0.1:9101 --upstream-token-file node.token \\
      --listen 127.0.0.1:8080 --token-file http.token
  git clone http://user:$(cat http.token)@127.0.0.1:8080/group/repo.git"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway",
        help="run a git smart-HTTP gateway in front of a node or proxy",
        description=__doc__,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--upstream", required=True, help="host:port of the gRPC server")
    parser.add_argument("--upstream-token-file", required=True, help="file holding the gRPC token")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="host:port to serve HTTP on")
    parser.add_argument("--token-file", required=True, help="file holding the HTTP basic-auth password")
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    parser.set_defaults(func=run)


def read_token(path: str) -> str:
    """The token in `path`, surrounding whitespace removed; ValueError when unusable."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read token file {path!r}: {exc.strerror}") from exc
    if not token:
        raise ValueError(f"token file is empty: {path!r}")
    return token


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` -> (host, port); ValueError when malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen must be host:port, got {listen!r}")
    return host.strip("[]"), int(port)


def run(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen)
        upstream_token, http_token = read_token(args.upstream_token_file), read_token(args.token_file)
    except ValueError as exc:
        print(f"gitraft gateway: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(args.upstream, upstream_token, http_token, host, port, args.log_level))


async def serve(upstream: str, upstream_token: str, http_token: str, host: str, port: int, level: str) -> int:
    """Run the gateway until SIGINT/SIGTERM; returns the exit code."""
    from cluster.gateway.server import Gateway
    from common.logs import setup_logging

    setup_logging("gateway", level)
    gateway = Gateway(upstream, upstream_token, http_token)
    try:
        bound = await gateway.start(host, port)
    except OSError as exc:
        await gateway.stop()
        print(f"gitraft gateway: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"gitraft gateway: serving http://{host}:{bound}/ -> {upstream}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop()
    return 0
