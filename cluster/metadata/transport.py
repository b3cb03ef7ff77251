"""`BoundedTransport`: pysyncobj's TCP transport with bounded frames (issue #7).

pysyncobj 0.3.17 frames every message as a 4-byte native-endian signed length and the
(Fernet-encrypted, zlib-compressed) pickle. Its `TcpConnection` buffers a frame of any
announced length (up to 2 GiB) by repeated copying, before any password check, and
keeps reading as long as the socket has data: a stranger who sends a huge length and
then filler stalls the tick thread for seconds, and the leader is deposed.

Here each connection is a `BoundedConnection` (our own class with the interface the
transport expects, hence its camelCase methods) that:
- reads a frame's length as soon as its 4 bytes arrive and closes the connection at
  once (nothing more is read) when it is negative or over the bound: `before_auth`
  until the peer has proved it holds the password, `after_auth` afterwards;
- calls a connection *authenticated* once a message carrying this connection's own
  random key decrypted and checked (pysyncobj's key exchange: only a holder of the
  password can produce it; a replayed frame cannot, the key is fresh per connection);
- buffers in a `bytearray` (appends and front deletions amortised O(1), no repeated
  copying) and reads at most `read_per_event` bytes per poll event, so one busy socket
  never monopolises the tick thread.
The transport also closes connections that have not identified themselves within the
connection timeout, and keeps at most `max_unidentified` of them (the oldest goes).

Legitimate frames (pysyncobj with our settings): the key exchange and the member's
address are a few hundred bytes; append-entries batches are cut at
`appendEntriesBatchSizeBytes` (64 KiB) plus at most one entry; snapshot chunks are
`logCompactionBatchSize` (64 KiB); Fernet adds a third. So `before_auth` (64 KiB) is
far above the handshake, and `after_auth` must exceed the largest entry:
`RaftDatabase.submit` refuses a payload over `max_payload()`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

import pysyncobj.pickle as raft_pickle
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, _getAddrType, set_keepalive
from pysyncobj.transport import TCPTransport

log = logging.getLogger(__name__)

HEADER = struct.Struct("i")  # pysyncobj's framing: native int, as the peers send it
READ_EVENTS = POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR
ALL_EVENTS = READ_EVENTS | POLL_EVENT_TYPE.WRITE
Callback = Any  # pysyncobj's callbacks: onConnected(), onMessageReceived(msg), onDisconnected()


@dataclass(frozen=True)
class FrameLimits:
    """Bounds on what one Raft connection may make this member buffer (bytes)."""

    before_auth: int = 64 << 10
    after_auth: int = 64 << 20
    read_per_event: int = 1 << 20
    max_unidentified: int = 64

    def max_payload(self) -> int:
        """The largest command payload whose frames stay under `after_auth`: Fernet's
        base64 adds a third, a batch may carry 64 KiB of other entries, pickle a little."""
        return max(0, (self.after_auth - (128 << 10)) * 2 // 3)


class _Refusals:
    """Rate-limited warning for refused frames (a flood must not flood the log)."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.count = 0
        self.last = -every

    def note(self, peer: str, length: int, bound: int) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.warning(
                "raft: closed a connection from %s announcing a %d-byte frame (bound %d; %d refused so far)",
                peer,
                length,
                bound,
                self.count,
            )


REFUSALS = _Refusals()


class BoundedConnection:
    """One non-blocking, framed Raft connection with bounded buffering (see module doc).

    Interface (as pysyncobj's `TcpConnection`): `connect`, `send`, `disconnect`,
    `fileno`, `state`, `getSendBufferSize`, the `setOn...Callback` setters, and the
    attributes `encryptor`, `sendRandKey`, `recvRandKey` the transport sets."""

    def __init__(
        self,
        poller: Any,
        limits: FrameLimits,
        sock: socket.socket | None = None,
        timeout: float = 10.0,
        send_buffer: int = 1 << 16,
        recv_buffer: int = 1 << 16,
        keepalive: tuple[int, int, int] | None = None,
    ) -> None:
        self.encryptor: Any = None
        self.sendRandKey: bytes | None = None
        self.recvRandKey: bytes | None = None
        self.recvLastTimestamp = 0
        self.authenticated = False
        self.opened_at = time.monotonic()
        self._poller = poller
        self._limits = limits
        self._timeout = timeout
        self._send_buffer = send_buffer
        self._recv_buffer = recv_buffer
        self._keepalive = keepalive
        self._in = bytearray()
        self._out = bytearray()
        self._last_read = time.monotonic()
        self._on_connected: Callback = None
        self._on_message: Callback = None
        self._on_disconnected: Callback = None
        self._sock = sock
        self._fileno: int | None = None
        self._state = CONNECTION_STATE.DISCONNECTED
        if sock is not None:
            self._fileno = sock.fileno()
            self._state = CONNECTION_STATE.CONNECTED
            self._set_keepalive()
            poller.subscribe(self._fileno, self._on_event, ALL_EVENTS)

    # --- pysyncobj's interface --------------------------------------------------

    @property
    def state(self) -> int:
        return int(self._state)

    def setOnConnectedCallback(self, callback: Callback) -> None:
        self._on_connected = callback

    def setOnMessageReceivedCallback(self, callback: Callback) -> None:
        self._on_message = callback

    def setOnDisconnectedCallback(self, callback: Callback) -> None:
        self._on_disconnected = callback

    def fileno(self) -> int | None:
        return self._fileno

    def getSendBufferSize(self) -> int:
        return len(self._out)

    def connect(self, host: str | None, port: int) -> bool:
        """Start a non-blocking connect; False when it failed at once."""
        if host is None:
            return False
        self._state = CONNECTION_STATE.DISCONNECTED
        self._fileno = None
        self._sock = sock = socket.socket(_getAddrType(host), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._recv_buffer)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._set_keepalive()
        sock.setblocking(False)
        self._in = bytearray()
        self._out = bytearray()
        self._last_read = time.monotonic()
        self.opened_at = time.monotonic()
        self.authenticated = False
        try:
            sock.connect((host, port))
        except BlockingIOError:
            pass
        except OSError:
            return False
        self._fileno = sock.fileno()
        self._state = CONNECTION_STATE.CONNECTING
        self._poller.subscribe(self._fileno, self._on_event, ALL_EVENTS)
        return True

    def send(self, message: Any) -> None:
        """Frame and queue `message`, then write what the socket takes now."""
        if self.sendRandKey:
            message = (self.sendRandKey, message)
        data = zlib.compress(raft_pickle.dumps(message), 3)
        if self.encryptor:
            data = self.encryptor.encrypt_at_time(data, int(time.monotonic()))
        if len(data) > self._limits.after_auth:
            log.warning(
                "raft: sending a %d-byte frame, over the after_auth bound %d",
                len(data),
                self._limits.after_auth,
            )
        self._out += HEADER.pack(len(data))
        self._out += data
        self._flush()
        if self._out and self._fileno is not None:
            self._poller.subscribe(self._fileno, self._on_event, ALL_EVENTS)

    def disconnect(self) -> None:
        """Close (idempotent); the disconnected callback runs once per open connection."""
        notify = self._on_disconnected is not None and self._state != CONNECTION_STATE.DISCONNECTED
        self.sendRandKey = None
        self.recvRandKey = None
        self.recvLastTimestamp = 0
        self.authenticated = False
        if self._fileno is not None:
            self._poller.unsubscribe(self._fileno)
            self._fileno = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._in = bytearray()
        self._out = bytearray()
        self._state = CONNECTION_STATE.DISCONNECTED
        if notify:
            self._on_disconnected()

    # --- events -------------------------------------------------------------------

    def _on_event(self, fd: int, event: int) -> None:
        if fd != self._fileno:
            self._poller.unsubscribe(fd)
            return
        if event & POLL_EVENT_TYPE.ERROR or self._timed_out():
            self.disconnect()
            return
        assert self._sock is not None
        if self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.disconnect()
            return
        if self._state == CONNECTION_STATE.CONNECTING:
            if self._on_connected is not None:
                self._on_connected()
            if self._state != CONNECTION_STATE.DISCONNECTED:
                self._state = CONNECTION_STATE.CONNECTED
                self._last_read = time.monotonic()
            return
        if event & POLL_EVENT_TYPE.WRITE:
            self._flush()
            if self._fileno is None:
                return
            self._poller.subscribe(fd, self._on_event, ALL_EVENTS if self._out else READ_EVENTS)
        if event & POLL_EVENT_TYPE.READ and self._read():
            self._dispatch()

    def _timed_out(self) -> bool:
        return time.monotonic() - self._last_read > self._timeout

    def _flush(self) -> None:
        while self._out and self._sock is not None:
            try:
                sent = self._sock.send(self._out)
            except BlockingIOError:
                return
            except OSError:
                self.disconnect()
                return
            if sent <= 0:
                return
            del self._out[:sent]

    def _bound(self) -> int:
        return self._limits.after_auth if self.authenticated else self._limits.before_auth

    def _read(self) -> bool:
        """Read up to `read_per_event` bytes; False if the connection was closed. Before
        authentication, stop at the first complete frame (it may authenticate)."""
        budget = self._limits.read_per_event
        while budget > 0 and self._sock is not None:
            try:
                chunk = self._sock.recv(self._recv_buffer)
            except BlockingIOError:
                break
            except OSError:
                self.disconnect()
                return False
            if not chunk:
                self.disconnect()
                return False
            self._in += chunk
            budget -= len(chunk)
            length = self._head_length()
            if length is None:
                continue
            if not 0 <= length <= self._bound():
                self._refuse(length)
                return False
            if not self.authenticated and len(self._in) >= HEADER.size + length:
                break
        self._last_read = time.monotonic()
        return True

    def _head_length(self) -> int | None:
        if len(self._in) < HEADER.size:
            return None
        return int(HEADER.unpack_from(self._in)[0])

    def _refuse(self, length: int) -> None:
        peer = "?"
        if self._sock is not None:
            with contextlib.suppress(OSError):
                address = self._sock.getpeername()
                peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else repr(address)
        REFUSALS.note(peer, length, self._bound())
        self.disconnect()

    def _next_frame(self) -> bytes | None:
        """The next complete frame, removed from the buffer; None if there is none yet
        (or the connection was closed for an oversized one)."""
        length = self._head_length()
        if length is None:
            return None
        if not 0 <= length <= self._bound():
            self._refuse(length)
            return None
        end = HEADER.size + length
        if len(self._in) < end:
            return None
        with memoryview(self._in) as view:
            frame = bytes(view[HEADER.size : end])
        del self._in[:end]
        return frame

    def _dispatch(self) -> None:
        while self._state != CONNECTION_STATE.DISCONNECTED:
            frame = self._next_frame()
            if frame is None:
                return
            try:
                message = self._decode(frame)
            except Exception:  # bad password, tampering, garbage: drop the connection
                self.disconnect()
                return
            if self._on_message is not None:
                self._on_message(message)

    def _decode(self, data: bytes) -> Any:
        if self.encryptor:
            stamp = self.encryptor.extract_timestamp(data)
            if stamp < self.recvLastTimestamp:
                raise ValueError("raft: frame older than the previous one")
            data = self.encryptor.decrypt(data)
            self.recvLastTimestamp = stamp
        message = raft_pickle.loads(zlib.decompress(data))
        if self.recvRandKey:
            key, message = message
            if key != self.recvRandKey:
                raise ValueError("raft: wrong connection key")
            self.authenticated = True
        return message

    def _set_keepalive(self) -> None:
        if self._sock is not None and self._keepalive is not None:
            set_keepalive(self._sock, *self._keepalive)


class _Listener:
    """The Raft port: accepts connections as `BoundedConnection`s (replaces TcpServer)."""

    def __init__(self, transport: BoundedTransport, host: str, port: int) -> None:
        self._transport = transport
        self._poller = transport._syncObj._poller
        self._address = (host, port)
        self._sock: socket.socket | None = None

    def bind(self) -> None:
        conf = self._transport._syncObj.conf
        sock = socket.socket(_getAddrType(self._address[0]), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, conf.sendBufferSize)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, conf.recvBufferSize)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind(self._address)
            sock.listen(16)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._poller.subscribe(sock.fileno(), self._on_event, READ_EVENTS)

    def unbind(self) -> None:
        if self._sock is not None:
            self._poller.unsubscribe(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _on_event(self, fd: int, event: int) -> None:
        if self._sock is None:
            return
        if event & POLL_EVENT_TYPE.ERROR:
            self.unbind()
            return
        try:
            sock, _ = self._sock.accept()
        except BlockingIOError:
            return
        except OSError:
            log.exception("raft: accept failed")
            return
        conf = self._transport._syncObj.conf
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, conf.sendBufferSize)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, conf.recvBufferSize)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = BoundedConnection(
            self._poller,
            self._transport.limits,
            sock,
            timeout=conf.connectionTimeout,
            send_buffer=conf.sendBufferSize,
            recv_buffer=conf.recvBufferSize,
        )
        self._transport._onNewIncomingConnection(conn)


class BoundedTransport(TCPTransport):
    """pysyncobj's TCP transport over `BoundedConnection`s. Pass it to SyncObj as
    `transportClass=BoundedTransport.with_limits(limits)`."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any, limits: FrameLimits) -> None:
        self.limits = limits  # before super(): it calls addNode and _createServer
        super().__init__(syncObj, selfNode, otherNodes)

    @classmethod
    def with_limits(cls, limits: FrameLimits) -> Any:
        return functools.partial(cls, limits=limits)

    def _createServer(self) -> None:
        host, port = self._syncObj.conf.bindAddress.rsplit(":", 1)
        self._server = _Listener(self, host, int(port))

    def addNode(self, node: Any) -> None:
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        if not self._shouldConnect(node):
            return
        conf = self._syncObj.conf
        conn = BoundedConnection(
            self._syncObj._poller,
            self.limits,
            timeout=conf.connectionTimeout,
            send_buffer=conf.sendBufferSize,
            recv_buffer=conf.recvBufferSize,
            keepalive=conf.tcp_keepalive,
        )
        conn.encryptor = self._syncObj.encryptor
        conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
        conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
        conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
        self._connections[node] = conn

    def _onNewIncomingConnection(self, conn: BoundedConnection) -> None:
        """Register a new incoming connection; at `max_unidentified` pending ones, the
        oldest is closed first (a peer identifies itself within a round trip, so a
        stranger holding idle connections evicts mostly its own)."""
        while len(self._unknownConnections) >= self.limits.max_unidentified:
            oldest = min(self._unknownConnections, key=lambda c: c.opened_at)
            self._unknownConnections.discard(oldest)
            oldest.disconnect()
        super()._onNewIncomingConnection(conn)

    def _onTick(self) -> None:
        super()._onTick()
        timeout = self._syncObj.conf.connectionTimeout
        now = time.monotonic()
        for conn in list(self._unknownConnections):
            if now - conn.opened_at > timeout:
                conn.disconnect()
