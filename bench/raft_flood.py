"""Raft port under a stranger's flood: longest commit gap and the flooded member's RSS.

    .venv/bin/python -m bench raft_flood        (or: make bench)

Three `cluster.testing.raft_member` processes (real pysyncobj, password set). A client
commits `record_health` commands one at a time through the leader while a stranger,
without the password, connects to the leader's Raft port (48 MiB per connection) and
to a follower's (16 MiB), each time announcing a frame of 2**31 - 1 bytes and then
sending filler, reconnecting for 5 s (issue #7, finding 3). Prints the longest time
between two commits from the flood's start, the commits and failures seen, whether
the leader or the term changed, and each flooded member's peak RSS (VmHWM).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.testing.raft_cluster import MetadataCluster
from cluster.testing.raft_flood import flood_during_writes


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="gitraft-bench-flood-") as tmp,
        MetadataCluster(Path(tmp), size=3, command_timeout=2.0) as cluster,
    ):
        cluster.start()
        report = flood_during_writes(cluster, {"leader": 48 << 20, "follower": 16 << 20}, duration=5.0)
    print(report.summary())
    deposed = report.leader_after != report.leader_before or report.terms_after != report.terms_before
    print(f"leader deposed: {deposed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
