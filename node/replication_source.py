"""The source side of a replication, as seen from the target node.

`SourceRepository` reaches one repository on another node through that node's
UploadPackSession RPC (a full-duplex `git upload-pack`), in two ways:

- `tunnel()`: a one-time git:// URL on this node's loopback TunnelListener, bridged to
  a session, for `git fetch` to reach with git's own git:// transport (no helper
  process). The source node's token stays in this process; bytes from the source are
  counted.
- `info()`: RepositoryInfo (whether it exists, its ref count, HEAD's target).

Failures of the source (e.g. NOT_FOUND) are kept as our own exception (common.errors)
in `Tunnel.error` / raised by `info`, so the caller reports the real cause rather
than git's "could not read from remote repository".
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import weakref
from collections.abc import AsyncIterator
from typing import Any

import grpc

from common.auth import bearer_metadata
from common.errors import (
    FailedPreconditionError,
    GitraftError,
    NotFoundError,
    UnavailableError,
    error_for_status,
    quoted,
)
from common.tls import ClientTls, aio_channel
from gitraft.v1 import repository_pb2, repository_pb2_grpc, shared_pb2

CHUNK_SIZE = 64 * 1024
_PKT_HEADER = re.compile(rb"[0-9a-fA-F]{4}")
# How long the preflight waits for the source node to be reachable.
CONNECT_TIMEOUT = 3.0
STDERR_LIMIT = 4096
# How this process dials source nodes (None: plain); set once at start by NodeServer.
PEER_TLS: ClientTls | None = None

# The channel is kept (see _shared_channel): reconnect fast after the source restarts,
# as the proxies' channels do, instead of gRPC's default backoff of up to 120 s.
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


# One channel per source address and event loop, kept open: a new channel per
# replication cost a TCP and HTTP/2 handshake on both nodes (its creation and closing
# showed in the drain's profile). At most MAX_CHANNELS addresses: the oldest is dropped,
# not closed - a replication may still hold it; grpc closes it when the last holder lets
# go (Channel.__del__).
MAX_CHANNELS = 64
_channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, grpc.aio.Channel]] = (
    weakref.WeakKeyDictionary()
)


def _shared_channel(address: str) -> grpc.aio.Channel:
    """This loop's channel to `address` (grpc reconnects it when the peer restarts)."""
    channels = _channels.setdefault(asyncio.get_running_loop(), {})
    channel = channels.get(address)
    if channel is None:
        while len(channels) >= MAX_CHANNELS:
            del channels[next(iter(channels))]
        channel = channels[address] = aio_channel(address, GRPC_OPTIONS, PEER_TLS)
    return channel


# What grpc.aio reports, as INTERNAL, when this side's send on a streaming call fails
# because the call already ended at the transport: the source's own status is lost.
_LOST_STATUS = "Internal error from Core"


def failure_of(exc: grpc.aio.AioRpcError, what: str) -> GitraftError:
    """A source node's RPC error as our exception, naming what failed. A send that raced
    the source's end of a session (grpc's local "Internal error from Core") is
    UnavailableError saying so: it is no internal error of either node."""
    if exc.code() == grpc.StatusCode.INTERNAL and exc.details() == _LOST_STATUS:
        return UnavailableError(f"{what}: the session ended while this node was still sending to it")
    return error_for_status(exc.code(), f"{what}: {exc.details() or exc.code()}")


class _Unimplemented(Exception):
    """The source does not serve this method (an older version)."""


class SourceRepository:
    """A repository on another node; use it inside `async with` (which takes this
    process's shared channel to the node)."""

    def __init__(self, address: str, token: str, repository: shared_pb2.Repository) -> None:
        self.address = address
        self.repository = repository
        self._metadata = bearer_metadata(token)
        self._channel: grpc.aio.Channel | None = None
        self.bytes_received = 0
        self.stderr_tail = b""

    async def __aenter__(self) -> SourceRepository:
        self._channel = _shared_channel(self.address)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._channel = None  # shared: stays open for the next replication from there

    async def ensure_exists(self) -> None:
        """Raise NotFoundError unless the source repository exists (or the call's error).

        A preflight with a unary call: a session refused at once (bad token, missing
        repository) may otherwise surface as a generic INTERNAL error, because grpc reports
        its own failed send rather than the server's status when the two race.
        """
        stub = repository_pb2_grpc.RepositoryServiceStub(self._require_channel())
        request = repository_pb2.RepositoryExistsRequest(repository=self.repository)
        try:
            answer = await stub.RepositoryExists(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise failure_of(exc, f"source {self.address}") from exc
        if not answer.exists:
            path = self.repository.relative_path
            raise NotFoundError(f"source {self.address}: repository not found: {quoted(path)}")

    async def info(self) -> repository_pb2.RepositoryInfoResponse:
        """RepositoryInfo of the source, `refs_only` (ref count, HEAD's target: no
        directory walk on the source); NotFoundError when it does not exist, or the
        call's error (see `_ask`)."""
        request = repository_pb2.RepositoryInfoRequest(repository=self.repository, refs_only=True)
        answer: repository_pb2.RepositoryInfoResponse = await self._ask("RepositoryInfo", request)
        return answer

    async def export(self, limit: int) -> repository_pb2.ExportRepositoryResponse:
        """ExportRepository of the source (node.replica_copy): HEAD's target and the ref
        count always; the refs and object files too when they fit in `limit` bytes.
        Errors as `info`."""
        request = repository_pb2.ExportRepositoryRequest(repository=self.repository, limit=limit)
        try:
            answer: repository_pb2.ExportRepositoryResponse = await self._ask("ExportRepository", request)
        except _Unimplemented:  # a source of an older version (a rolling upgrade)
            info = await self.info()
            return repository_pb2.ExportRepositoryResponse(
                default_branch=info.default_branch, ref_count=info.ref_count
            )
        return answer

    async def _ask(self, method: str, request: Any) -> Any:
        """A unary call of RepositoryService `method` on the source. UnavailableError
        when the source cannot be reached within CONNECT_TIMEOUT (the shared channel may
        be reconnecting: the source restarted); once reached, its answer is waited for
        (a busy source may take seconds: the node's replication_timeout bounds the whole
        replication)."""
        channel = self._require_channel()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await channel.channel_ready()
        except TimeoutError:
            raise UnavailableError(
                f"source {self.address}: unreachable (not connected within {CONNECT_TIMEOUT:g} s)"
            ) from None
        stub = repository_pb2_grpc.RepositoryServiceStub(channel)
        try:
            return await getattr(stub, method)(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise _Unimplemented(method) from exc
            raise failure_of(exc, f"source {self.address}") from exc

    def open_session(self, git_protocol: str = "") -> Session:
        """A started UploadPackSession on the source repository."""
        stub = repository_pb2_grpc.RepositoryServiceStub(self._require_channel())
        first = repository_pb2.UploadPackSessionRequest(repository=self.repository, git_protocol=git_protocol)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
        call = stub.UploadPackSession(_requests(first, queue), metadata=self._metadata)
        return Session(self, call, queue)

    def _require_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            raise RuntimeError("SourceRepository used outside `async with`")
        return self._channel

    @contextlib.asynccontextmanager
    async def tunnel(self) -> AsyncIterator[Tunnel]:
        """A Tunnel for one `git fetch` of `Tunnel.url`; closed (and its session ended)
        on exit."""
        listener = await _listener()
        tunnel = Tunnel(self)
        token = listener.register(tunnel)
        try:
            yield tunnel
        finally:
            listener.forget(token)
            await tunnel.close()


class Session:
    """One UploadPackSession call: stdin goes in through `send`, stdout comes out of
    `stdout()`. The source's status (e.g. NOT_FOUND, UNAUTHENTICATED) surfaces from
    `stdout()` as our exception; `send` never fails, so it cannot hide it."""

    def __init__(self, source: SourceRepository, call: Any, queue: asyncio.Queue[bytes | None]) -> None:
        self.source = source
        self._call = call
        self._queue = queue

    async def send(self, data: bytes) -> None:
        """Queue `data` for the source's stdin (blocks while the queue is full)."""
        await self._queue.put(data)

    async def close(self) -> None:
        """End the source's stdin."""
        await self._queue.put(None)

    async def stdout(self) -> AsyncIterator[bytes]:
        """stdout chunks, counted in the source's bytes_received; stderr kept as its tail."""
        source = self.source
        try:
            while (message := await self._call.read()) is not grpc.aio.EOF:
                if message.stderr:
                    source.stderr_tail = (source.stderr_tail + message.stderr)[-STDERR_LIMIT:]
                if message.stdout:
                    source.bytes_received += len(message.stdout)
                    yield message.stdout
        except grpc.aio.AioRpcError as exc:
            raise failure_of(exc, f"source {source.address}") from exc

    def cancel(self) -> None:
        self._call.cancel()


async def _requests(
    first: repository_pb2.UploadPackSessionRequest, queue: asyncio.Queue[bytes | None]
) -> AsyncIterator[repository_pb2.UploadPackSessionRequest]:
    yield first
    while (data := await queue.get()) is not None:
        yield repository_pb2.UploadPackSessionRequest(stdin=data)


class Tunnel:
    """Bridges one git:// connection (its request line already read by the
    TunnelListener) to one UploadPackSession; `url` is what git fetches."""

    def __init__(self, source: SourceRepository) -> None:
        self.source = source
        self.url = ""
        self.error: GitraftError | None = None
        self._task: asyncio.Task[None] | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve the connection the listener handed over (once: the token is spent)."""
        self._task = asyncio.current_task()
        try:
            await self._bridge(reader, writer)
        except GitraftError as exc:
            self.error = exc
        except (ConnectionError, OSError):
            pass  # git went away; its exit status tells the caller
        finally:
            writer.close()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _bridge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = self.source.open_session()
        upstream = asyncio.create_task(_socket_to_session(reader, session))
        head: bytes | None = b""  # the answer's first bytes, until they show a pkt-line length
        try:
            try:
                async for chunk in session.stdout():
                    data = chunk
                    if head is not None:
                        head += chunk
                        if len(head) < 4:
                            continue
                        _pkt_length(head[:4])  # FailedPreconditionError for garbage
                        data, head = head, None
                    writer.write(data)
                    await writer.drain()
            except GitraftError:
                # Bytes that are no pkt-line are the failure whatever status the call
                # then ended with (a source that answered "00" and ended raced our first
                # send: grpc reported INTERNAL instead of its OK).
                if not head:
                    raise
            if head is not None:  # git would only say "could not read from remote repository"
                raise FailedPreconditionError(
                    f"source upload-pack ended before its first pkt-line: {quoted(head)}"
                )
        finally:
            upstream.cancel()
            session.cancel()


class TunnelListener:
    """This node's git:// port for replication fetches: 127.0.0.1, an ephemeral port,
    one per event loop, opened at the first replication and kept.

    `git fetch git://127.0.0.1:<port>/<token>` connects straight to it (no helper
    process: the `ext::` transport it replaces started a Python interpreter per fetch,
    ~15 ms of CPU). git's first pkt-line names the repository: here a one-time token of
    128 random bits, registered by one Tunnel and spent by its first connection, so
    another local process that connects reaches nothing (closed at once) and the source
    node's token never leaves this process. The request line is read within
    REQUEST_TIMEOUT and at most one pkt-line long; at most MAX_PENDING connections may
    be waiting for theirs (more are closed at once: idle strangers cannot hold sockets
    and tasks without bound)."""

    REQUEST_TIMEOUT = 10.0
    MAX_PENDING = 64

    def __init__(self) -> None:
        self._waiting: dict[str, Tunnel] = {}
        self._server: asyncio.Server | None = None
        self.port = 0
        self.pending = 0  # connections whose request line is not read yet

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def register(self, tunnel: Tunnel) -> str:
        token = secrets.token_hex(16)
        self._waiting[token] = tunnel
        tunnel.url = f"git://127.0.0.1:{self.port}/{token}"
        return token

    def forget(self, token: str) -> None:
        self._waiting.pop(token, None)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.pending >= self.MAX_PENDING:
            writer.close()
            return
        self.pending += 1
        try:
            async with asyncio.timeout(self.REQUEST_TIMEOUT):
                length = _pkt_length(await reader.readexactly(4))
                line = await reader.readexactly(max(0, length - 4))
        except (TimeoutError, asyncio.IncompleteReadError, GitraftError, ConnectionError, OSError):
            writer.close()
            return
        finally:
            self.pending -= 1
        # "git-upload-pack /<token>\0host=127.0.0.1:<port>\0[\0version=N\0]"
        service, _, rest = line.partition(b" ")
        token = rest.split(b"\0", 1)[0].removeprefix(b"/").decode(errors="replace")
        tunnel = self._waiting.pop(token, None) if service == b"git-upload-pack" else None
        if tunnel is None:
            writer.close()
            return
        await tunnel.serve(reader, writer)


_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[TunnelListener]] = (
    weakref.WeakKeyDictionary()
)


async def _listener() -> TunnelListener:
    """This event loop's TunnelListener, started on first use. Replications arriving
    while it starts wait for its port (before, they were handed port 0); a start that
    failed is tried again by the next caller."""
    loop = asyncio.get_running_loop()
    starting = _listeners.get(loop)
    if starting is None or (starting.done() and (starting.cancelled() or starting.exception() is not None)):
        starting = _listeners[loop] = loop.create_task(_started(TunnelListener()))
    return await asyncio.shield(starting)  # one caller's cancellation does not stop the start


async def _started(listener: TunnelListener) -> TunnelListener:
    await listener.start()
    return listener


def _pkt_length(header: bytes) -> int:
    """A pkt-line header's length: exactly four hex digits, as git reads it (int(_, 16)
    alone also takes "0x1f", "-001" or " 1f ", which git refuses)."""
    if _PKT_HEADER.fullmatch(header) is None:
        raise FailedPreconditionError(f"source upload-pack sent a bad pkt-line header: {quoted(header)}")
    return int(header, 16)


async def _socket_to_session(reader: asyncio.StreamReader, session: Session) -> None:
    while data := await reader.read(CHUNK_SIZE):
        await session.send(data)
    await session.close()
