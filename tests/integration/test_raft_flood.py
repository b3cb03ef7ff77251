"""A stranger without the password floods the Raft ports (issue #7, finding 3).

Three real pysyncobj members; a writer commits through the leader while a stranger
sends a 4-byte length of 2**31 - 1 and then tens of MiB of filler to the leader's and
a follower's Raft port, reconnecting for 3 seconds. The member must close such a
connection at once (it has not authenticated, and the frame is over the
pre-authentication bound), so the leader is never deposed and every command commits.
The longest commit gap and the members' peak RSS are printed, not asserted (speed is
for `python -m bench raft_flood`).
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.metadata.transport import FrameLimits
from cluster.testing.raft_cluster import MetadataCluster
from cluster.testing.raft_flood import flood_during_writes

LEADER_FILLER = 48 << 20
FOLLOWER_FILLER = 16 << 20


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MetadataCluster]:
    with MetadataCluster(tmp_path, size=3, command_timeout=2.0) as c:
        yield c.start()


def test_a_strangers_huge_frames_neither_depose_the_leader_nor_stop_commits(cluster: MetadataCluster) -> None:
    report = flood_during_writes(cluster, {"leader": LEADER_FILLER, "follower": FOLLOWER_FILLER})
    print(report.summary())

    # Each member closed every one of the stranger's connections before taking all
    # the filler.
    for f in report.floods:
        assert f.connections >= 1
        assert f.closed_by_member == f.connections, f"{f.target} kept reading the stranger's frame"
        assert f.most_sent < f.filler, f"{f.target} accepted all {f.filler} bytes"
    # No election: the same leader, the same term everywhere, no failed command.
    assert report.leader_after == report.leader_before
    assert report.terms_after == report.terms_before
    assert report.failures == []
    # Commits kept flowing after the flood began.
    assert report.commit_times[-1] > report.flood_ended


def test_a_strangers_idle_connections_are_bounded_oldest_first(tmp_path: Path) -> None:
    # A long connection timeout, so that only the bound closes connections here.
    with MetadataCluster(tmp_path, size=3, command_timeout=2.0, connection_timeout=60.0) as cluster:
        cluster.start()
        leader = cluster.wait_for_leader()
        host, port = leader.raft_addr.rsplit(":", 1)
        limit, extra = FrameLimits().max_unidentified, 20
        idle = [socket.create_connection((host, int(port)), timeout=20.0) for _ in range(limit + extra)]
        try:
            for sock in idle[:extra]:  # the oldest were closed to make room
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1) == b""
            # The newest are still pending: none closed (a closed one would be readable).
            readable, _, _ = select.select(idle[extra:], [], [], 0.5)
            assert readable == []
            leader.call("record_health", proxy="idle", storage="s", healthy=True, now=1.0)
            assert cluster.wait_for_leader() is leader
        finally:
            for sock in idle:
                sock.close()
