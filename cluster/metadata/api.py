"""The metadata store's contract: what the proxy may ask of Raft-replicated metadata.

Every *command* is one Raft log entry, applied deterministically on every proxy: time,
ids and random choices travel inside the call (`now`, `intent_id`, ...), never read
at apply. A command returns only after it is committed *and* applied on this proxy,
so a query issued after it sees its effect. Commands carry a `command_id`-style
identity where a retry after an unknown outcome (leader change, timeout) must apply
once: the implementation deduplicates them.

Failures of the store itself raise (see common.errors):
- `UnavailableError("no quorum ...")` when a command cannot commit within its timeout
  (outcome unknown: the command may still apply later; retrying is safe);
- `NotFoundError` / `FailedPreconditionError` / `AlreadyExistsError` /
  `InvalidArgumentError` for command results that refuse (unknown repository, wrong
  lease owner or outdated primary, path taken, malformed command).

Adding a command: its apply function declared with `@command` (`cluster.metadata.commands`)
and its typed, documented method here; the store's method is one line
(`name = command(MetadataStore.name)`), and a unit test fails while any part is missing.

*Queries* read this proxy's applied state. `barrier()` gives a linearizable read point:
after it returns, the local state includes every command committed before it began.

Allowed job transitions (`JobState`):
    ready -> in_progress            lease_jobs
    in_progress -> in_progress      renew_leases (same owner)
    in_progress -> completed        complete_job (same owner, lease not expired)
    in_progress -> failed           fail_job (attempts < max_attempts; ready again at retry_at)
    in_progress -> dead             fail_job (attempts reached max_attempts)
    in_progress -> in_progress      lease expired: the next lease_jobs re-leases it (new owner),
                                    counting one attempt
    in_progress -> dead             lease expired and that attempt reached max_attempts
    failed -> in_progress           lease_jobs once `now >= retry_at`
    ready, failed -> (deleted)      remove_repository; set_replication_factor unassigning
                                    the target
    in_progress -> completed        remove_repository (not `delete_replica`; last_error
                                    'repository removed', no owner any more)
    in_progress -> failed           finish_write refusing a write (fenced) on the job's
                                    target: no owner, retry at once, no attempt counted
    dead, failed -> ready           retry_jobs (attempts reset; RetryReplicationJobs, or the
                                    reconciler for a dead `delete_replica`)
Completed jobs are pruned by a later complete_job once an hour (command time) old, and
by the reconciler's prune_jobs; dead jobs are kept with their last error until
superseded (their target holds their generation, is unassigned, or the repository is
gone), then prune_jobs deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NotRequired, Protocol, TypedDict


class JobState(StrEnum):
    READY = "ready"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD = "dead"


class ChangeType(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE_REPLICA = "delete_replica"
    RENAME = "rename"
    OPTIMIZE = "optimize"


@dataclass(frozen=True)
class Storage:
    name: str
    address: str


@dataclass(frozen=True)
class Replica:
    """One assigned replica: the replica rows are the assignment (an unassigned replica
    has no row; a `delete_replica` job removes its data)."""

    storage: str
    # -1 = assigned but never written (no data yet).
    generation: int


@dataclass(frozen=True)
class Repository:
    repository_id: str
    relative_path: str
    replica_path: str
    primary: str
    # The replicas wanted (asked at creation or by `set_replication_factor`); `replicas`
    # are those assigned, fewer while too few storages exist.
    replication_factor: int
    created_at: float
    replicas: tuple[Replica, ...] = ()

    @property
    def generation(self) -> int:
        """The repository's generation: the max over its replicas (-1 when none)."""
        return max((r.generation for r in self.replicas), default=-1)

    def up_to_date(self) -> tuple[str, ...]:
        """Storages whose generation equals the repository's."""
        g = self.generation
        return tuple(r.storage for r in self.replicas if r.generation == g)


@dataclass(frozen=True)
class Job:
    id: int
    repository_id: str
    change: ChangeType
    source: str
    target: str
    source_generation: int
    state: JobState
    attempts: int
    lease_owner: str = ""
    lease_expires_at: float = 0.0
    retry_at: float = 0.0
    last_error: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    # Free-form per change: `delete_replica` jobs carry the `replica_path` to remove
    # (and `relative_path` when the whole repository was removed).
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteIntent:
    intent_id: str
    repository_id: str
    proxy: str
    storages: tuple[str, ...]
    deadline: float


@dataclass(frozen=True)
class WriteResult:
    """What finish_write did."""

    generation: int
    # Storages that got an `update` job (deduplicated against jobs already waiting).
    scheduled: tuple[str, ...]
    # Non-empty when the write was refused by the fence (see `finish_write`): why. The
    # write must not be acknowledged; its replica is being repaired.
    fenced: str = ""


@dataclass(frozen=True)
class HealthVote:
    """One proxy's latest recorded view of one storage (`record_health`)."""

    healthy: bool
    # The proxy's clock when it voted (the `now` of its record_health).
    updated_at: float


@dataclass(frozen=True)
class RaftStatus:
    """This proxy's view of Raft."""

    self_address: str
    leader_address: str
    role: str  # "leader" | "follower" | "candidate"
    term: int
    commit_index: int
    applied_index: int
    # Raft address -> whether this member sees it connected.
    peers: dict[str, bool] = field(default_factory=dict)


class RepairItem(TypedDict):
    """One replica for `schedule_repairs` (see `cluster.metadata.repair`)."""

    repository_id: str
    storage: str
    # True: found damaged on disk; its generation drops to -1 if still `generation`
    # (without `matching`).
    reset: bool
    generation: int
    # With `reset`: the verifier's form. The replicas found equal to the primary (the
    # primary among them) go to `generation` + 1 instead, so no generation decreases.
    matching: NotRequired[list[str]]


class MetadataStore(Protocol):
    """Raft-replicated cluster metadata. All methods are safe to call from the event loop."""

    # --- lifecycle -------------------------------------------------------------
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def barrier(self) -> None:
        """Wait until local state includes every command committed before this call."""
        ...

    def status(self) -> RaftStatus: ...
    def is_leader(self) -> bool: ...

    # --- commands --------------------------------------------------------------
    async def register_storage(self, name: str, address: str) -> None:
        """Add a storage, or change its address."""
        ...

    async def create_repository(
        self,
        repository_id: str,
        relative_path: str,
        replica_path: str,
        storages: list[str],
        primary: str,
        replication_factor: int,
        now: float,
    ) -> Repository:
        """Create the metadata; every storage gets a replica row at generation -1.

        Idempotent for the same repository_id (returns the existing repository unchanged);
        AlreadyExistsError when the path is taken by another id; InvalidArgumentError when
        `primary` is not one of `storages`."""
        ...

    async def remove_repository(self, repository_id: str, now: float) -> None:
        """Forget the repository; every replica gets a `delete_replica` job. Its waiting
        jobs are deleted and its in-progress ones (but `delete_replica`) end, so no job
        can complete into it (see `complete_job`). Idempotent: an unknown id is a no-op."""
        ...

    async def rename_repository(self, repository_id: str, new_relative_path: str, now: float) -> None:
        """Change the client-facing path only (replica paths never move). NotFoundError for
        an unknown id; AlreadyExistsError when the path is taken by another id."""
        ...

    async def begin_write(
        self, intent_id: str, repository_id: str, storages: list[str], proxy: str, deadline: float
    ) -> WriteIntent:
        """Record a mutator in flight before it reaches any node. With one storage (the
        one that executes it; every mutator today) it is fenced: the intent records the
        primary and the generation it starts from (see `finish_write`). Idempotent on
        intent_id.
        NotFoundError for an unknown repository; FailedPreconditionError when a storage is
        not assigned to it."""
        ...

    async def renew_intent(self, intent_id: str, deadline: float, now: float) -> bool:
        """Move an open intent's deadline to `deadline` (never earlier), so the leader
        does not repair a write that is still making progress. False when the intent is
        closed (e.g. repaired): its write will not be acknowledged."""
        ...

    async def finish_write(
        self, intent_id: str, succeeded: list[str], failed: list[str], now: float, *, repair: bool = False
    ) -> WriteResult:
        """Close the intent. In one command, when the fence holds (the storage in
        `succeeded` was the primary when the intent began and still is, is up to date,
        and nothing fenced the intent meanwhile: see `cluster.metadata.writes`): it goes
        to generation max+1; every other assigned replica gets an `update` job from it
        (merged into an `update` job already waiting - ready or failed - for the same
        target, which takes the new source and generation). When the fence fails, the
        result's `fenced` says why: nothing is acknowledged and the storage is repaired
        from a replica without the write. Storages in `failed` are marked as needing a
        checksum comparison. With `succeeded` empty, no generation changes.

        Idempotent on intent_id (a retry returns the first result), except a success
        reported after a repair closed the intent (fenced). `repair`: the leader closing
        an abandoned intent; FailedPreconditionError when it was renewed past `now`.
        NotFoundError for an unknown intent or a repository removed meanwhile."""
        ...

    async def set_generation(self, repository_id: str, storage: str, generation: int, now: float) -> int:
        """Raise a replica's generation to `generation` (never lowers it); returns the new
        value. NotFoundError when the storage holds no replica of the repository."""
        ...

    async def lease_jobs(
        self,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        healthy: set[str] | None = None,
        max_per_target: int | None = None,
    ) -> list[Job]:
        """Lease up to `limit` jobs that are ready (or failed with retry_at <= now, or
        in_progress with an expired lease) to `owner`, oldest first, at most one job per
        (repository, target) in progress at once. Re-leasing an expired job counts an
        attempt; one that reaches the maximum turns dead instead of being leased.

        With `healthy` (the storages healthy for the cluster, as the caller saw them), a
        job whose target - or, for `create`/`update`, source - is not in it is skipped
        and left as it is (no attempt counted); None leases regardless of health. With
        `max_per_target`, a target with that many unexpired leases (any owner) gets no
        more this time."""
        ...

    async def renew_leases(self, owner: str, job_ids: list[int], now: float, lease_seconds: float) -> None:
        """Extend `owner`'s unexpired leases; FailedPreconditionError naming the jobs it no
        longer holds (the others are renewed)."""
        ...

    async def complete_job(self, job_id: int, owner: str, now: float) -> bool:
        """Mark completed and, for `create`/`update`, raise the target's generation to the
        job's source_generation (never lowering it), in one command. Returns True.
        FailedPreconditionError when `owner` no longer holds the lease or it expired;
        NotFoundError for an unknown job.

        For a job (not `delete_replica`) whose repository was removed: changes no
        metadata (never re-creates a replica) and returns False, whoever the owner."""
        ...

    async def fail_job(self, job_id: int, owner: str, error: str, now: float, retry_at: float) -> Job:
        """Count an attempt: `failed` until `retry_at`, or `dead` at the maximum attempts;
        returns the job. FailedPreconditionError when `owner` does not hold it."""
        ...

    async def set_replication_factor(
        self,
        repository_id: str,
        assign: list[str],
        unassign: list[str],
        now: float,
        replication_factor: int | None = None,
    ) -> Repository:
        """Assign storages (replica at -1 plus an `update` job from an up-to-date replica,
        when there is data) and unassign others (row forgotten, waiting jobs for it deleted,
        a `delete_replica` job). The repository's replication_factor (the replicas wanted)
        becomes `replication_factor`; None keeps it (a re-assignment: one in, one out).
        FailedPreconditionError to unassign the primary; InvalidArgumentError to leave
        no replica or for a factor below 1."""
        ...

    async def set_primary(self, repository_id: str, storage: str, now: float) -> Repository:
        """Make `storage` the primary. Checked when the command applies (not when it was
        sent): FailedPreconditionError unless `storage` is assigned and up to date;
        NotFoundError for an unknown repository. Health is the caller's to check."""
        ...

    async def accept_dataloss(self, repository_id: str, authoritative_storage: str, now: float) -> Repository:
        """Make `authoritative_storage` the newest (generation max+1, checksum flag cleared)
        and schedule updates from it for every other assigned replica; the primary is left
        to the elector; writes in flight elsewhere are fenced. FailedPreconditionError when
        the storage is not assigned or a replication job into it is running."""
        ...

    async def record_health(self, proxy: str, storage: str, healthy: bool, now: float) -> None:
        """Record one proxy's view of a node (submit only on change, plus a slow refresh).
        A vote older (by `now`) than the one stored for (proxy, storage) is ignored."""
        ...

    # --- queries (local applied state; call barrier() first where routing needs it) --
    async def storages(self) -> list[Storage]: ...
    async def get_repository(self, relative_path: str) -> Repository | None: ...
    async def get_repository_by_id(self, repository_id: str) -> Repository | None: ...
    async def list_repositories(self) -> list[Repository]: ...
    async def healthy_storages(self, now: float) -> set[str]:
        """Storages seen healthy by a majority of live proxies (a proxy is live while its
        health views are fresher than the staleness window)."""
        ...

    async def health_votes(self) -> dict[str, dict[str, HealthVote]]:
        """Every proxy's latest recorded votes: proxy -> storage -> vote. Votes of proxies
        that stopped voting are included; compare `updated_at` to tell them."""
        ...

    async def up_to_date_replicas(self, repository_id: str) -> list[str]: ...
    async def valid_primaries(self, repository_id: str, now: float) -> list[str]:
        """Healthy, up-to-date, assigned replicas (candidates for primary)."""
        ...

    async def dataloss(self, now: float, include_partial: bool) -> tuple[list[Repository], list[Repository]]:
        """(unavailable, partially_available): repositories with no healthy up-to-date replica,
        and ones whose some assigned replica is outdated or unhealthy."""
        ...

    async def expired_intents(self, now: float) -> list[WriteIntent]: ...
    async def open_intents(self, repository_id: str) -> list[WriteIntent]:
        """The repository's intents begun and not yet finished (whatever their deadline):
        their storages may hold writes not yet recorded as a generation."""
        ...

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        """(state, target storage) -> number of jobs."""
        ...

    async def list_jobs(self, states: list[JobState] | None, limit: int) -> list[Job]:
        """Up to `limit` jobs in `states` (None: every state), oldest first."""
        ...

    # --- operator commands and queries (gitraft CLI) -------------------------------
    async def track_repository(
        self,
        repository_id: str,
        relative_path: str,
        replica_path: str,
        storages: list[str],
        primary: str,
        replication_factor: int,
        now: float,
    ) -> Repository:
        """Adopt a repository found on `primary`'s disk at `replica_path`: `primary` at
        generation 0, every other storage at -1 with an `update` job from it. Idempotent
        for the same repository_id; AlreadyExistsError when the relative path or the
        replica path is already tracked; InvalidArgumentError when `primary` is not one
        of `storages`. Whether the data exists is the caller's to check."""
        ...

    async def all_open_intents(self) -> list[WriteIntent]:
        """Every write intent begun and not yet finished, oldest deadline first."""
        ...

    # --- reconciler and verifier ----------------------------------------------------
    async def schedule_repairs(self, items: list[RepairItem], now: float) -> list[str]:
        """An `update` job from the current primary for each replica (see
        `cluster.metadata.repair`); one outcome per item: "scheduled" or why not."""
        ...

    async def retry_jobs(self, job_ids: list[int], all_dead: bool, now: float) -> list[int]:
        """Dead or failed jobs (by id, or every dead one) become ready, attempts reset;
        returns the ids retried."""
        ...

    async def clear_needs_verify(self, replicas: list[tuple[str, str]], now: float) -> int:
        """Clear the checksum flag of these (repository_id, storage) replicas."""
        ...

    async def needs_verify(self, limit: int = 1000) -> list[tuple[str, str]]:
        """Replicas flagged by a failed write, oldest id first."""
        ...

    async def prune_jobs(self, completed_before: float, limit: int) -> dict[str, int]:
        """Delete up to `limit` old completed jobs and superseded dead/failed ones."""
        ...

    async def outdated_without_job(self, targets: list[str], per_target: int) -> list[tuple[str, str]]:
        """Outdated replicas on `targets` without a waiting or running job (indexed)."""
        ...

    async def recently_dead(self, since: float) -> set[tuple[str, str]]:
        """(repository_id, target) of update/create jobs dead since `since`."""
        ...

    async def repositories_after(self, after: str, limit: int) -> list[Repository]:
        """A page of repositories by id, after the id `after` ("" for the first)."""
        ...

    async def repository_count(self) -> int: ...
    async def dead_deletions(self, healthy: set[str], before: float, limit: int) -> list[int]:
        """Ids of dead `delete_replica` jobs, died before `before`, on healthy storages."""
        ...

    async def replicas_on(self, storage: str, limit: int) -> list[Repository]:
        """Up to `limit` repositories with a replica on `storage`."""
        ...

    async def storage_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(assigned replicas per storage, primaries per storage)."""
        ...

    async def failover_candidates(self, healthy: set[str], limit: int) -> list[Repository]:
        """Repositories whose primary is not in `healthy` or is outdated (indexed)."""
        ...

    async def job_counts(self) -> dict[str, int]:
        """Jobs per state, every job counted."""
        ...

    async def runnable_job_exists(
        self, now: float, healthy: set[str], max_per_target: int | None = None
    ) -> bool:
        """Whether some job is leasable now with all its storages in `healthy` and its
        target below `max_per_target` unexpired leases."""
        ...

    async def repository_paths(self, repository_ids: list[str]) -> dict[str, str]:
        """repository_id -> relative_path for the ids that exist."""
        ...
