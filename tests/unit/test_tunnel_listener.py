"""The node's git:// replication port: only the holder of a one-time token is bridged."""

from __future__ import annotations

import asyncio
from typing import Any

from node.replication_source import Tunnel, TunnelListener


class RecordingTunnel(Tunnel):
    """Answers the connection it is handed with what followed the request line."""

    def __init__(self) -> None:
        super().__init__(source=None)  # type: ignore[arg-type]
        self.served = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.served += 1
        writer.write(b"served:" + await reader.read(100))
        await writer.drain()
        writer.close()


def request_line(path: str) -> bytes:
    body = f"git-upload-pack {path}\0host=127.0.0.1\0".encode()
    return f"{len(body) + 4:04x}".encode() + body


async def exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_a_token_opens_its_tunnel_once_and_strangers_reach_nothing() -> None:
    listener = TunnelListener()
    await listener.start()
    tunnel = RecordingTunnel()
    token = listener.register(tunnel)
    assert tunnel.url == f"git://127.0.0.1:{listener.port}/{token}"
    assert len(token) == 32

    assert await exchange(listener.port, request_line("/" + "0" * 32) + b"0000") == b""
    assert await exchange(listener.port, b"zzzz garbage") == b""
    assert await exchange(listener.port, request_line(f"/{token}").replace(b"upload", b"receive")) == b""
    assert tunnel.served == 0  # none of those spent the token

    assert await exchange(listener.port, request_line(f"/{token}") + b"0000") == b"served:0000"
    assert await exchange(listener.port, request_line(f"/{token}") + b"0000") == b""  # spent
    assert tunnel.served == 1

    other = RecordingTunnel()
    forgotten = listener.register(other)
    listener.forget(forgotten)
    assert await exchange(listener.port, request_line(f"/{forgotten}")) == b""
    assert other.served == 0


async def test_a_silent_stranger_is_dropped_after_the_request_timeout(monkeypatch: Any) -> None:
    monkeypatch.setattr(TunnelListener, "REQUEST_TIMEOUT", 0.2)
    listener = TunnelListener()
    await listener.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(b"00")  # half a header, then nothing
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_idle_strangers_hold_at_most_max_pending_connections() -> None:
    listener = TunnelListener()
    listener.MAX_PENDING = 4
    await listener.start()
    idle = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(4)]
    for _ in range(100):  # until the listener has accepted all four
        if listener.pending == 4:
            break
        await asyncio.sleep(0.01)
    assert listener.pending == 4
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed at once, not after 10 s
    writer.close()
    for _, idle_writer in idle:
        idle_writer.close()
    for _ in range(100):
        if listener.pending == 0:
            break
        await asyncio.sleep(0.01)
    assert listener.pending == 0
    tunnel = RecordingTunnel()
    token = listener.register(tunnel)
    assert await exchange(listener.port, request_line(f"/{token}") + b"0000") == b"served:0000"
