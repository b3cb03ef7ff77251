"""Channels from a proxy to its storage nodes.

`NodePool` keeps one grpc.aio channel per node (created on first use, replaced when
the node's address changes) and builds the call metadata every proxy-to-node call
carries: the node token and the current correlation id. With `tls` the channels
are TLS, verified by its CA bundle (common.tls).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import grpc

from common.auth import bearer_metadata
from common.errors import NotFoundError, UnavailableError
from common.logs import CORRELATION_METADATA_KEY, correlation_id
from common.tls import ClientTls, aio_channel
from gitraft.v1 import shared_pb2

# Same message bound as the node's (streams move data in smaller chunks); reconnect
# quickly to a restarted node instead of gRPC's default backoff of up to two minutes.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


# Seconds a call waits for its node's channel to connect.
CONNECT_TIMEOUT = 1.0


class NodePool:
    """Channels to nodes by storage name. Use from one event loop."""

    def __init__(
        self, node_token: str, addresses: Mapping[str, str] | None = None, tls: ClientTls | None = None
    ) -> None:
        self.node_token = node_token
        self.tls = tls
        self._addresses: dict[str, str] = dict(addresses or {})
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def set_address(self, name: str, address: str) -> None:
        self._addresses[name] = address

    def names(self) -> list[str]:
        return sorted(self._addresses)

    def address(self, name: str) -> str:
        try:
            return self._addresses[name]
        except KeyError:
            raise NotFoundError(f"unknown storage: {name!r}") from None

    def node_address(self, name: str) -> shared_pb2.NodeAddress:
        """How another node reaches `name` (for ReplicateRepository's source_node)."""
        return shared_pb2.NodeAddress(name=name, address=self.address(name), token=self.node_token)

    def channel(self, name: str) -> grpc.aio.Channel:
        """The channel to storage `name` (NotFoundError for an unknown storage)."""
        address = self.address(name)
        current = self._channels.get(name)
        if current is not None and current[0] == address:
            return current[1]
        channel = aio_channel(address, CHANNEL_OPTIONS, self.tls)
        if current is not None:  # the node moved: let calls in flight on the old one finish
            closing = asyncio.get_running_loop().create_task(current[1].close(grace=5.0))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self._channels[name] = (address, channel)
        return channel

    async def connect(self, name: str, within: float = CONNECT_TIMEOUT) -> None:
        """Return once the channel to `name` is connected; UnavailableError (nothing was
        sent, a retry is safe) when it cannot connect within `within` seconds. Costs
        nothing on a connected channel; spares a call on a channel still backing off
        after its node restarted from failing at once."""
        channel = self.channel(name)
        if channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY:
            return
        try:
            await asyncio.wait_for(channel.channel_ready(), within)
        except TimeoutError:
            raise UnavailableError(f"storage {name!r} unreachable at {self.address(name)!r}") from None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata for a call to a node: its token and the correlation id, if any."""
        cid = correlation_id.get()
        extra = ((CORRELATION_METADATA_KEY, cid),) if cid else ()
        return (*bearer_metadata(self.node_token), *extra)

    async def close(self) -> None:
        channels = [c for _, c in self._channels.values()]
        self._channels.clear()
        await asyncio.gather(*(c.close() for c in channels), *self._closing, return_exceptions=True)
