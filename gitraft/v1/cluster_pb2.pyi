from gitraft.v1 import lint_pb2 as _lint_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProxyStatus(_message.Message):
    __slots__ = ("name", "raft_address", "raft_role", "raft_term", "commit_index", "applied_index", "reachable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RAFT_ROLE_FIELD_NUMBER: _ClassVar[int]
    RAFT_TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    raft_address: str
    raft_role: str
    raft_term: int
    commit_index: int
    applied_index: int
    reachable: bool
    def __init__(self, name: _Optional[str] = ..., raft_address: _Optional[str] = ..., raft_role: _Optional[str] = ..., raft_term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., reachable: _Optional[bool] = ...) -> None: ...

class NodeHealth(_message.Message):
    __slots__ = ("storage", "address", "healthy", "health_by_proxy")
    class HealthByProxyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_BY_PROXY_FIELD_NUMBER: _ClassVar[int]
    storage: str
    address: str
    healthy: bool
    health_by_proxy: _containers.ScalarMap[str, bool]
    def __init__(self, storage: _Optional[str] = ..., address: _Optional[str] = ..., healthy: _Optional[bool] = ..., health_by_proxy: _Optional[_Mapping[str, bool]] = ...) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("storage", "generation", "assigned", "healthy", "up_to_date")
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    UP_TO_DATE_FIELD_NUMBER: _ClassVar[int]
    storage: str
    generation: int
    assigned: bool
    healthy: bool
    up_to_date: bool
    def __init__(self, storage: _Optional[str] = ..., generation: _Optional[int] = ..., assigned: _Optional[bool] = ..., healthy: _Optional[bool] = ..., up_to_date: _Optional[bool] = ...) -> None: ...

class ClusterRepository(_message.Message):
    __slots__ = ("repository_id", "relative_path", "replica_path", "primary", "generation", "replication_factor", "replicas")
    REPOSITORY_ID_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    REPLICA_PATH_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    repository_id: str
    relative_path: str
    replica_path: str
    primary: str
    generation: int
    replication_factor: int
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    def __init__(self, repository_id: _Optional[str] = ..., relative_path: _Optional[str] = ..., replica_path: _Optional[str] = ..., primary: _Optional[str] = ..., generation: _Optional[int] = ..., replication_factor: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ...) -> None: ...

class ClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterStatusResponse(_message.Message):
    __slots__ = ("answered_by", "proxies", "nodes", "repository_count", "queue_depth")
    class QueueDepthEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    PROXIES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_COUNT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    answered_by: str
    proxies: _containers.RepeatedCompositeFieldContainer[ProxyStatus]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeHealth]
    repository_count: int
    queue_depth: _containers.ScalarMap[str, int]
    def __init__(self, answered_by: _Optional[str] = ..., proxies: _Optional[_Iterable[_Union[ProxyStatus, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[NodeHealth, _Mapping]]] = ..., repository_count: _Optional[int] = ..., queue_depth: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListClusterRepositoriesRequest(_message.Message):
    __slots__ = ("relative_path",)
    RELATIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    relative_path: str
    def __init__(self, relative_path: _Optional[str] = ...) -> None: ...

class ListClusterRepositoriesResponse(_message.Message):
    __slots__ = ("repositories",)
    REPOSITORIES_FIELD_NUMBER: _ClassVar[int]
    repositories: _containers.RepeatedCompositeFieldContainer[ClusterRepository]
    def __init__(self, repositories: _Optional[_Iterable[_Union[ClusterRepository, _Mapping]]] = ...) -> None: ...

class DatalossCheckRequest(_message.Message):
    __slots__ = ("include_partially_available",)
    INCLUDE_PARTIALLY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    include_partially_available: bool
    def __init__(self, include_partially_available: _Optional[bool] = ...) -> None: ...

class DatalossCheckResponse(_message.Message):
    __slots__ = ("unavailable", "partially_available")
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    PARTIALLY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    unavailable: _containers.RepeatedCompositeFieldContainer[ClusterRepository]
    partially_available: _containers.RepeatedCompositeFieldContainer[ClusterRepository]
    def __init__(self, unavailable: _Optional[_Iterable[_Union[ClusterRepository, _Mapping]]] = ..., partially_available: _Optional[_Iterable[_Union[ClusterRepository, _Mapping]]] = ...) -> None: ...

class ReplicationJob(_message.Message):
    __slots__ = ("id", "repository_id", "relative_path", "change", "source", "target", "source_generation", "state", "attempts", "lease_owner", "last_error")
    ID_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_ID_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_GENERATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LEASE_OWNER_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    repository_id: str
    relative_path: str
    change: str
    source: str
    target: str
    source_generation: int
    state: str
    attempts: int
    lease_owner: str
    last_error: str
    def __init__(self, id: _Optional[int] = ..., repository_id: _Optional[str] = ..., relative_path: _Optional[str] = ..., change: _Optional[str] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., source_generation: _Optional[int] = ..., state: _Optional[str] = ..., attempts: _Optional[int] = ..., lease_owner: _Optional[str] = ..., last_error: _Optional[str] = ...) -> None: ...

class ListReplicationJobsRequest(_message.Message):
    __slots__ = ("states", "limit")
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, states: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListReplicationJobsResponse(_message.Message):
    __slots__ = ("jobs", "depth_by_state")
    class DepthByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    JOBS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[ReplicationJob]
    depth_by_state: _containers.ScalarMap[str, int]
    def __init__(self, jobs: _Optional[_Iterable[_Union[ReplicationJob, _Mapping]]] = ..., depth_by_state: _Optional[_Mapping[str, int]] = ...) -> None: ...

class VerifyRepositoriesRequest(_message.Message):
    __slots__ = ("relative_paths",)
    RELATIVE_PATHS_FIELD_NUMBER: _ClassVar[int]
    relative_paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, relative_paths: _Optional[_Iterable[str]] = ...) -> None: ...

class ReplicaChecksum(_message.Message):
    __slots__ = ("storage", "generation", "checksum", "default_branch", "matches", "error")
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BRANCH_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    storage: str
    generation: int
    checksum: str
    default_branch: str
    matches: bool
    error: str
    def __init__(self, storage: _Optional[str] = ..., generation: _Optional[int] = ..., checksum: _Optional[str] = ..., default_branch: _Optional[str] = ..., matches: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class RepositoryVerification(_message.Message):
    __slots__ = ("relative_path", "primary", "replicas", "repairs_scheduled")
    RELATIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    REPAIRS_SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    relative_path: str
    primary: str
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaChecksum]
    repairs_scheduled: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, relative_path: _Optional[str] = ..., primary: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[ReplicaChecksum, _Mapping]]] = ..., repairs_scheduled: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyRepositoriesResponse(_message.Message):
    __slots__ = ("repositories", "mismatches")
    REPOSITORIES_FIELD_NUMBER: _ClassVar[int]
    MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    repositories: _containers.RepeatedCompositeFieldContainer[RepositoryVerification]
    mismatches: int
    def __init__(self, repositories: _Optional[_Iterable[_Union[RepositoryVerification, _Mapping]]] = ..., mismatches: _Optional[int] = ...) -> None: ...

class RetryReplicationJobsRequest(_message.Message):
    __slots__ = ("job_ids", "all_dead")
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_DEAD_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[int]
    all_dead: bool
    def __init__(self, job_ids: _Optional[_Iterable[int]] = ..., all_dead: _Optional[bool] = ...) -> None: ...

class RetryReplicationJobsResponse(_message.Message):
    __slots__ = ("retried",)
    RETRIED_FIELD_NUMBER: _ClassVar[int]
    retried: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, retried: _Optional[_Iterable[int]] = ...) -> None: ...
