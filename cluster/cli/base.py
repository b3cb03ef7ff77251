"""What every operator subcommand shares: finding the cluster, calling ClusterService,
errors and exit codes, tables and JSON.

The cluster is found from, in order: `--proxy ADDR[,ADDR...]`, `$GITRAFT_PROXY`, or the
`cluster.json` a running `gitraft dev` wrote in `./.gitraft/` (or `$GITRAFT_CLUSTER_FILE`).
The token from `--token`, `$GITRAFT_TOKEN`, or that cluster.json. The first proxy whose
channel connects within CONNECT_TIMEOUT answers; a read it cannot answer (no Raft
quorum on its side, a timeout) is asked of the next one. A change is never sent twice:
its outcome is unknown after such an error.

Exit codes (every subcommand):

    0  done; nothing needs attention
    1  done, and the answer needs attention (status DEGRADED, a check failed, verify
       found a mismatch)
    2  usage: bad arguments, or no cluster or token configured
    3  cluster unreachable: no proxy answered, or the cluster could not decide (no Raft
       quorum, a timeout)
    4  refused: the cluster answered no (unknown repository or storage, a precondition
       such as "storage is outdated", a bad token)

Failures print one line, `gitraft <command>: <reason>`, on stderr; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message

from common.auth import bearer_metadata
from gitraft.v1 import cluster_pb2, cluster_pb2_grpc

EXIT_OK = 0
EXIT_ATTENTION = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4

EXIT_CODES_HELP = "exit codes: 0 ok, 1 needs attention, 2 usage, 3 cluster unreachable, 4 refused"

DEFAULT_CLUSTER_FILE = Path(".gitraft") / "cluster.json"
# Seconds to wait for a proxy's channel to connect before trying the next one.
CONNECT_TIMEOUT = 3.0
DEFAULT_TIMEOUT = 30.0

# Methods that change nothing: safe to ask another proxy after "unavailable".
READ_ONLY = frozenset(
    {
        "ClusterStatus",
        "ListClusterRepositories",
        "DatalossCheck",
        "ListReplicationJobs",
        "ListUntrackedRepositories",
        "CheckCluster",
    }
)
_UNREACHABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class CliError(Exception):
    """A failure to report in one line; `exit_code` says which kind."""

    exit_code = EXIT_ATTENTION


class UsageError(CliError):
    exit_code = EXIT_USAGE


class Unreachable(CliError):
    exit_code = EXIT_UNREACHABLE


class Refused(CliError):
    exit_code = EXIT_REFUSED


# --- parsers ---------------------------------------------------------------------------


def add_parser(
    subparsers: Any, name: str, *, help: str, description: str, example: str
) -> argparse.ArgumentParser:
    """A subcommand parser with the options every operator command takes."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"example:\n  {example}\n\n{EXIT_CODES_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(parser)
    return parser


def add_connection_options(parser: argparse.ArgumentParser, inherit: bool = False) -> None:
    """--proxy, --token, --json, --timeout. With `inherit` (a nested subcommand such as
    `jobs retry`) an option not given keeps the parent command's value."""
    group = parser.add_argument_group("cluster")
    keep: dict[str, Any] = {"default": argparse.SUPPRESS} if inherit else {}
    group.add_argument(
        "--proxy",
        metavar="ADDR[,ADDR...]",
        help="proxy gRPC address(es) (default: $GITRAFT_PROXY, else ./.gitraft/cluster.json)",
        **keep,
    )
    group.add_argument("--token", help="client token (default: $GITRAFT_TOKEN, else cluster.json)", **keep)
    group.add_argument(
        "--json", action="store_true", help="print JSON (stable field names; see README)", **keep
    )
    group.add_argument(
        "--timeout",
        type=float,
        help=f"seconds per call (default {DEFAULT_TIMEOUT:g})",
        **(keep or {"default": DEFAULT_TIMEOUT}),
    )


# --- finding the cluster ---------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the cluster is: proxy gRPC addresses in the order to try, and the token."""

    proxies: tuple[str, ...]
    token: str


def find_cluster(args: argparse.Namespace, env: dict[str, str] | None = None) -> Target:
    """The proxies and token from the flags, the environment or cluster.json (module
    doc); UsageError naming what is missing."""
    env = dict(os.environ if env is None else env)
    listed = args.proxy or env.get("GITRAFT_PROXY", "")
    token = args.token or env.get("GITRAFT_TOKEN", "")
    info: dict[str, Any] | None = None
    if not listed or not token:
        info = _cluster_file(
            Path(env.get("GITRAFT_CLUSTER_FILE") or DEFAULT_CLUSTER_FILE), required=not listed
        )
    proxies = (
        [p.strip() for p in listed.split(",") if p.strip()]
        if listed
        else list((info or {}).get("proxies", []))
    )
    if not proxies:
        raise UsageError(
            "no proxy: pass --proxy ADDR, set GITRAFT_PROXY, or run where .gitraft/cluster.json is"
        )
    token = token or str((info or {}).get("token") or "")
    if not token:
        raise UsageError("no token: pass --token, set GITRAFT_TOKEN, or run where .gitraft/cluster.json is")
    return Target(tuple(proxies), token)


def _cluster_file(path: Path, required: bool) -> dict[str, Any] | None:
    from cluster.local.layout import LayoutError, read_cluster_file

    try:
        return read_cluster_file(path)
    except LayoutError as exc:
        if required:
            raise UsageError(f"{exc}; or pass --proxy ADDR / set GITRAFT_PROXY") from None
        return None


# --- calling ClusterService -----------------------------------------------------------


class Client:
    """ClusterService on the first proxy of `target` that connects; `call` maps a gRPC
    failure to Unreachable or Refused with the proxy's own message."""

    def __init__(self, target: Target, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.target = target
        self.timeout = timeout
        self.address = ""
        self._channel: grpc.Channel | None = None
        self._stub: Any = None

    def connect(self, skip: frozenset[str] = frozenset()) -> Client:
        """Connect to the first proxy (not in `skip`) whose channel connects."""
        self.close()
        tried = []
        for address in self.target.proxies:
            if address in skip:
                continue
            channel = open_channel(address)
            if channel is not None:
                self.address, self._channel = address, channel
                self._stub = cluster_pb2_grpc.ClusterServiceStub(channel)
                return self
            tried.append(address)
        raise Unreachable(f"cluster unreachable: no proxy answered at {', '.join(tried) or 'no address'}")

    @property
    def stub(self) -> Any:
        """The ClusterService stub of the connected proxy (connects on first use)."""
        if self._stub is None:
            self.connect()
        return self._stub

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """`ClusterService.<method>(request)` with the token; raises CliError. A read
        (READ_ONLY) that finds its proxy unable to answer (no quorum there, a timeout)
        is asked of the next proxy: a minority proxy does not hide a working cluster."""
        tried: set[str] = set()
        while True:
            try:
                return call(
                    self.stub, method, request, self.target.token, timeout or self.timeout, self.address
                )
            except Unreachable:
                tried.add(self.address)
                if method not in READ_ONLY or not self._connect_other(tried):
                    raise

    def _connect_other(self, tried: set[str]) -> bool:
        """Connect to a proxy not in `tried`; False when none connects."""
        try:
            self.connect(skip=frozenset(tried))
        except Unreachable:
            return False
        return True

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def open_channel(address: str, within: float = CONNECT_TIMEOUT) -> grpc.Channel | None:
    """A connected channel to `address`, or None when it does not connect `within` seconds."""
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=within)
    except grpc.FutureTimeoutError:
        channel.close()
        return None
    return channel


def call(stub: Any, method: str, request: Any, token: str, timeout: float, address: str) -> Any:
    """One unary call with the bearer token; CliError (Unreachable / Refused) on failure."""
    try:
        return getattr(stub, method)(request, metadata=bearer_metadata(token), timeout=timeout)
    except grpc.RpcError as exc:
        raise error_of(exc, method, address) from None


def error_of(exc: grpc.RpcError, method: str, address: str) -> CliError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or code.name.lower()
    if code in _UNREACHABLE_CODES:
        return Unreachable(f"cluster unavailable at {address}: {details}")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Refused(f"token refused by {address}: {details}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return Refused(f"{address} does not serve {method} (a proxy of another gitraft version?)")
    return Refused(details)


# --- running a subcommand -------------------------------------------------------------


def run(args: argparse.Namespace, body: Callable[[Client, argparse.Namespace], int]) -> int:
    """Find the cluster, run `body(client, args)` and return its exit code; every
    failure becomes one line on stderr and its exit code (module doc)."""
    name = getattr(args, "command", "") or "gitraft"
    client: Client | None = None
    try:
        client = Client(find_cluster(args), args.timeout).connect()
        return body(client, args)
    except CliError as exc:
        print(f"gitraft {name}: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # the reader went away (`gitraft status | head -1`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a bug: still one line, never a traceback
        print(f"gitraft {name}: unexpected failure: {exc}", file=sys.stderr)
        return EXIT_ATTENTION
    finally:
        if client is not None:
            client.close()


# --- output ----------------------------------------------------------------------------


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows under headers, columns aligned with two spaces (last column not padded)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        padded = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=True)] + [r[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    """`12.3 GiB`; `unknown` for a negative count."""
    if n < 0:
        return "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def plural(n: int, word: str, many: str = "") -> str:
    """`1 node`, `2 nodes`; `many` for irregular plurals (`repositories`)."""
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


# --- repositories as text and JSON ------------------------------------------------------


def message_json(msg: message.Message) -> dict[str, Any]:
    """Every field of a ClusterService message (no map fields) by its proto name, unset
    ones included: nested messages as objects, repeated fields as lists, numbers as
    numbers (protobuf's own JSON mapping writes 64-bit integers as strings). So the
    `--json` field names are the proto's, stable by the proto's rules."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None:
            value = [message_json(v) for v in value] if field.is_repeated else message_json(value)
        elif field.is_repeated:
            value = list(value)
        out[field.name] = value
    return out


def replicas_text(repo: cluster_pb2.ClusterRepository) -> str:
    """`node-a=3 node-b=2(outdated) node-c=3(down)`."""
    parts = []
    for r in repo.replicas:
        flags = [f for f, on in (("outdated", not r.up_to_date), ("down", not r.healthy)) if on]
        parts.append(f"{r.storage}={r.generation}" + (f"({','.join(flags)})" if flags else ""))
    return " ".join(parts)


def repository_rows(repos: Sequence[cluster_pb2.ClusterRepository]) -> Iterator[list[Any]]:
    for repo in repos:
        yield [
            repo.relative_path,
            repo.primary,
            repo.generation,
            repo.replication_factor,
            replicas_text(repo),
        ]


REPOSITORY_HEADERS = ("REPOSITORY", "PRIMARY", "GENERATION", "RF", "REPLICAS (storage=generation)")
