"""cluster.local.ports: ports below the ephemeral range, never handed out twice, refused addresses."""

from __future__ import annotations

import socket

import pytest

from cluster.local.ports import NoFreePortError, ephemeral_start, free_port, free_port_block, refused_address


def test_ports_lie_below_the_ephemeral_range_and_are_never_repeated() -> None:
    top = ephemeral_start()
    seen = [free_port() for _ in range(300)] + free_port_block(8)
    assert len(set(seen)) == len(seen)
    assert all(20000 <= p < top for p in seen)


def test_a_block_is_consecutive_and_free() -> None:
    block = free_port_block(12)
    assert block == list(range(block[0], block[0] + 12))
    for port in block:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_no_room_is_an_error_not_an_empty_list() -> None:
    with pytest.raises(NoFreePortError):
        free_port_block(10, low=30000, high=30005)


def test_a_refused_address_refuses_at_once() -> None:
    with refused_address() as address:
        host, port = address.rsplit(":", 1)
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.settimeout(2)
            s.connect((host, int(port)))
        # Held: nobody else can listen there meanwhile.
        with socket.socket() as other, pytest.raises(OSError):
            other.bind((host, int(port)))
            other.listen()
