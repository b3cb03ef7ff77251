"""Optional TLS for gRPC listeners and channels and for the HTTP gateway.

Off by default (a local cluster speaks plain gRPC/HTTP on loopback). A process serves
TLS when its config names a certificate chain and a private key (PEM files); a client
verifies servers against a CA bundle (PEM; empty = the system's roots), and the name in
the address it dials must be in the server certificate (a SAN: host name or IP).

    server:  port = add_port(server, "0.0.0.0:9001", ServerTls(cert, key))
    client:  channel = aio_channel("node-a:9101", options, ClientTls(ca))   # or None: plain

`ClientTls(...).sync_channel(address)` is the helper for command-line clients (and
tests). `check()` reads the files when a config is loaded, and they are read again when a
listener or channel is made: a missing or unreadable file raises ConfigError naming it.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from common.config import ConfigError

Options = Sequence[tuple[str, Any]]


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS {what} {path!r}: {exc.strerror}") from exc


@dataclass(frozen=True)
class ServerTls:
    """A listener's certificate chain and key (PEM paths); `enabled` when both are set."""

    cert: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ConfigError("tls: set both tls_cert and tls_key, or neither")

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    def check(self) -> None:
        """ConfigError unless the files (when set) are readable and make a key pair."""
        if self.enabled:
            self.ssl_context()

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(_read(self.key, "key"), _read(self.cert, "certificate"))])

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context for aiohttp (TLS 1.2 or later)."""
        for path, what in ((self.cert, "certificate"), (self.key, "key")):
            _read(path, what)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"tls: cannot use certificate {self.cert!r} with key {self.key!r}") from exc
        return context


@dataclass(frozen=True)
class ClientTls:
    """How a client verifies TLS servers: a CA bundle (PEM path; "" = system roots)."""

    ca: str = ""

    def check(self) -> None:
        """ConfigError unless the CA bundle (when set) is readable."""
        if self.ca:
            _read(self.ca, "CA bundle")

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(_read(self.ca, "CA bundle") if self.ca else None)

    def sync_channel(self, address: str, options: Options = ()) -> grpc.Channel:
        """A blocking channel to a TLS server (command-line clients, tests)."""
        return grpc.secure_channel(address, self.grpc_credentials(), options=list(options))


def add_port(server: grpc.aio.Server, address: str, tls: ServerTls) -> int:
    """Bind `address` on `server`, with TLS when `tls.enabled`; the bound port (0 = failed)."""
    if tls.enabled:
        return int(server.add_secure_port(address, tls.grpc_credentials()))
    return int(server.add_insecure_port(address))


def aio_channel(address: str, options: Options, tls: ClientTls | None) -> grpc.aio.Channel:
    """An asyncio channel to `address`: TLS verified by `tls`, or plain when None."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, tls.grpc_credentials(), options=list(options))
