"""Command results as `api` values: the JSON a handler returns, turned into dataclasses.

Used by the command declarations (`commands.Command.result`) and by `queries`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from cluster.metadata.api import ChangeType, Job, JobState, Replica, Repository, WriteIntent, WriteResult
from common.errors import FailedPreconditionError

T = TypeVar("T")


def _build(cls: type[T], d: dict[str, Any], **converted: Any) -> T:
    """`cls` from the keys of `d` that are its fields, `converted` ones replaced."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in d.items() if k in names} | converted)


def repository_from_dict(d: dict[str, Any]) -> Repository:
    replicas = tuple(Replica(r["storage"], r["generation"]) for r in d["replicas"])
    return _build(Repository, d, replicas=replicas)


def job_from_dict(d: dict[str, Any]) -> Job:
    return _build(
        Job, d, change=ChangeType(d["change"]), state=JobState(d["state"]), params=dict(d["params"])
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
