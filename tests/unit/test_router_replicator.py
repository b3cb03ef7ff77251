"""Which jobs a replication worker tries to lease, and its backoff."""

from __future__ import annotations

from cluster.metadata.api import ChangeType, Job, JobState
from cluster.replicator import backoff_seconds, leasable, runnable

NOW = 1000.0


def job(state: JobState, change: ChangeType = ChangeType.UPDATE, **kw: float) -> Job:
    return Job(1, "r", change, "a", "b", 3, state, 0, **kw)  # type: ignore[arg-type]


def test_leasable_states() -> None:
    assert leasable(job(JobState.READY), NOW)
    assert leasable(job(JobState.FAILED, retry_at=NOW), NOW)
    assert not leasable(job(JobState.FAILED, retry_at=NOW + 1), NOW)
    assert leasable(job(JobState.IN_PROGRESS, lease_expires_at=NOW - 1), NOW)
    assert not leasable(job(JobState.IN_PROGRESS, lease_expires_at=NOW + 1), NOW)
    assert not leasable(job(JobState.COMPLETED), NOW)
    assert not leasable(job(JobState.DEAD), NOW)


def test_jobs_for_down_nodes_are_left_alone() -> None:
    assert runnable(job(JobState.READY), NOW, {"a", "b"})
    assert not runnable(job(JobState.READY), NOW, {"a"})  # target down
    assert not runnable(job(JobState.READY), NOW, {"b"})  # source down
    assert runnable(job(JobState.READY, ChangeType.DELETE_REPLICA), NOW, {"b"})


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_seconds(n) for n in range(1, 10)]
    assert delays == sorted(delays)
    assert delays[0] == 1.0 and delays[-1] == 60.0


def test_a_job_older_than_its_target_is_obsolete() -> None:
    from cluster.metadata.api import Replica, Repository
    from cluster.replicator import obsolete

    repo = Repository("r", "p", "q", "a", 3, 0.0, (Replica("a", 5), Replica("b", 4)))
    assert obsolete(job(JobState.READY), repo)  # b at 4 >= the job's generation 3
    newer = Job(2, "r", ChangeType.UPDATE, "a", "b", 5, JobState.READY, 0)
    assert not obsolete(newer, repo)
