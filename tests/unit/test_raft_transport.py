"""`BoundedConnection`: frame bounds before and after authentication (issue #7).

One end of a socketpair is a `BoundedConnection` driven by pysyncobj's own poller; the
test writes raw frames into the other end, as a peer (with the password) or a stranger
(without) would.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pysyncobj.pickle as raft_pickle
import pytest
from pysyncobj.encryptor import getEncryptor
from pysyncobj.poller import createPoller
from pysyncobj.tcp_connection import CONNECTION_STATE

from cluster.metadata.config import RaftConfig
from cluster.metadata.transport import BoundedConnection, FrameLimits
from common.config import ConfigError

LIMITS = FrameLimits(before_auth=4 << 10, after_auth=1 << 20, read_per_event=64 << 10)
ENCRYPTOR = getEncryptor("secret")


class Harness:
    def __init__(self) -> None:
        self.poller = createPoller("auto")
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.theirs.settimeout(10.0)
        self.writers: list[threading.Thread] = []
        self.received: list[Any] = []
        self.closed = 0
        self.conn = BoundedConnection(self.poller, LIMITS, self.ours, timeout=30.0)
        self.conn.encryptor = ENCRYPTOR
        self.conn.setOnMessageReceivedCallback(self.received.append)
        self.conn.setOnDisconnectedCallback(self._closed)

    def _closed(self) -> None:
        self.closed += 1

    def pump(self, until: Any, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not until():
            assert time.monotonic() < deadline, "condition not reached"
            self.poller.poll(0.01)

    def send_raw(self, *pieces: bytes) -> None:
        """Write the pieces in order, one send each, from a thread (the poll loop here
        drains the other end meanwhile)."""
        self.writers.append(threading.Thread(target=self._write, args=(pieces,)))
        self.writers[-1].start()

    def _write(self, pieces: tuple[bytes, ...]) -> None:
        with contextlib.suppress(OSError):  # closed by the connection under test
            for piece in pieces:
                self.theirs.sendall(piece)


def frame(message: Any, encrypt: bool = True) -> bytes:
    data = zlib.compress(raft_pickle.dumps(message), 3)
    if encrypt:
        data = ENCRYPTOR.encrypt_at_time(data, int(time.monotonic()))
    return struct.pack("i", len(data)) + data


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.conn.disconnect()
    for w in harness.writers:
        w.join()
    harness.theirs.close()


def authenticate(h: Harness) -> None:
    """The peer's key exchange: its key, then a message carrying the key we chose."""
    h.send_raw(frame(os.urandom(32)))
    h.pump(lambda: len(h.received) == 1)
    h.conn.recvRandKey = key = os.urandom(32)
    h.send_raw(frame((key, "127.0.0.1:7001")))
    h.pump(lambda: len(h.received) == 2)
    assert h.conn.authenticated


def test_a_stranger_announcing_a_huge_frame_is_closed_before_its_filler_is_read(h: Harness) -> None:
    h.send_raw(struct.pack("i", 2**31 - 1) + b"x" * 1000)
    h.pump(lambda: h.conn.state == CONNECTION_STATE.DISCONNECTED)
    assert h.closed == 1 and h.received == []


def test_a_negative_length_is_refused(h: Harness) -> None:
    h.send_raw(struct.pack("i", -5))
    h.pump(lambda: h.conn.state == CONNECTION_STATE.DISCONNECTED)
    assert h.received == []


def test_before_authentication_a_frame_over_the_small_bound_is_refused(h: Harness) -> None:
    # A legitimate message but too large for an unauthenticated connection.
    h.send_raw(frame(os.urandom(LIMITS.before_auth)))
    h.pump(lambda: h.conn.state == CONNECTION_STATE.DISCONNECTED)
    assert h.received == []


def test_a_frame_without_the_password_is_refused(h: Harness) -> None:
    h.send_raw(frame("127.0.0.1:7001", encrypt=False))
    h.pump(lambda: h.conn.state == CONNECTION_STATE.DISCONNECTED)
    assert h.received == []


def test_after_authentication_large_frames_pass_up_to_the_larger_bound(h: Harness) -> None:
    authenticate(h)
    key = h.conn.recvRandKey
    big = os.urandom(256 << 10)  # over before_auth, under after_auth (after Fernet's third)
    h.send_raw(frame((key, {"type": "append_entries", "data": big})))
    h.pump(lambda: len(h.received) == 3)
    assert h.received[2]["data"] == big
    h.send_raw(struct.pack("i", LIMITS.after_auth + 1))
    h.pump(lambda: h.conn.state == CONNECTION_STATE.DISCONNECTED)
    assert len(h.received) == 3


def test_a_message_without_our_connection_key_does_not_authenticate(h: Harness) -> None:
    h.send_raw(frame(os.urandom(32)))
    h.pump(lambda: len(h.received) == 1)
    h.conn.recvRandKey = os.urandom(32)
    h.send_raw(frame((os.urandom(32), "127.0.0.1:7001")))  # a replayed/forged key
    h.pump(lambda: h.conn.state == CONNECTION_STATE.DISCONNECTED)
    assert len(h.received) == 1 and not h.conn.authenticated


def test_frames_split_across_reads_and_several_per_read_are_all_delivered(h: Harness) -> None:
    authenticate(h)
    key = h.conn.recvRandKey
    data = b"".join(frame((key, i)) for i in range(50))
    h.send_raw(*(data[i : i + 777] for i in range(0, len(data), 777)))
    h.pump(lambda: len(h.received) == 52)
    assert h.received[2:] == list(range(50))


def test_the_frame_bounds_are_validated_in_config() -> None:
    with pytest.raises(ConfigError):
        RaftConfig(max_frame_before_auth=100)
    with pytest.raises(ConfigError):
        RaftConfig(max_frame_before_auth=2 << 20, max_frame_after_auth=1 << 20)
    assert FrameLimits().max_payload() > 32 << 20
