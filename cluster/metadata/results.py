"""Command results as `api` values: the JSON a handler returns, turned into dataclasses.

Used by the command declarations (`commands.Command.result`) and by `queries`.
"""

from __future__ import annotations

from typing import Any

from cluster.metadata.api import ChangeType, Job, JobState, Replica, Repository, WriteIntent, WriteResult
from common.errors import FailedPreconditionError


def repository_from_dict(d: dict[str, Any]) -> Repository:
    return Repository(
        repository_id=d["repository_id"],
        relative_path=d["relative_path"],
        replica_path=d["replica_path"],
        primary=d["primary"],
        replication_factor=d["replication_factor"],
        created_at=d["created_at"],
        replicas=tuple(Replica(r["storage"], r["generation"]) for r in d["replicas"]),
    )


def job_from_dict(d: dict[str, Any]) -> Job:
    return Job(
        id=d["id"],
        repository_id=d["repository_id"],
        change=ChangeType(d["change"]),
        source=d["source"],
        target=d["target"],
        source_generation=d["source_generation"],
        state=JobState(d["state"]),
        attempts=d["attempts"],
        lease_owner=d["lease_owner"],
        lease_expires_at=d["lease_expires_at"],
        retry_at=d["retry_at"],
        last_error=d["last_error"],
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        params=dict(d["params"]),
    )


def job_list(value: list[dict[str, Any]]) -> list[Job]:
    return [job_from_dict(j) for j in value]


def intent_from_dict(d: dict[str, Any]) -> WriteIntent:
    return WriteIntent(d["intent_id"], d["repository_id"], d["proxy"], tuple(d["storages"]), d["deadline"])


def write_result(d: dict[str, Any]) -> WriteResult:
    return WriteResult(
        generation=d["generation"], scheduled=tuple(d["scheduled"]), fenced=str(d.get("fenced") or "")
    )


def lost_leases(lost: list[int]) -> None:
    """`renew_leases`: FailedPreconditionError naming the jobs no longer held."""
    if lost:
        raise FailedPreconditionError(f"leases lost: {lost!r}")


def job_completed(value: Any) -> bool:
    """`complete_job`: False when the job's repository was removed (nothing changed)."""
    return not (isinstance(value, dict) and value.get("repository_removed"))


def strings(value: list[Any]) -> list[str]:
    return [str(v) for v in value]


def ints(value: list[Any]) -> list[int]:
    return [int(v) for v in value]
