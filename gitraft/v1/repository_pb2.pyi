from gitraft.v1 import lint_pb2 as _lint_pb2
from gitraft.v1 import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateRepositoryRequest(_message.Message):
    __slots__ = ("repository", "default_branch")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BRANCH_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    default_branch: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., default_branch: _Optional[str] = ...) -> None: ...

class CreateRepositoryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RepositoryExistsRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class RepositoryExistsResponse(_message.Message):
    __slots__ = ("exists",)
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    def __init__(self, exists: _Optional[bool] = ...) -> None: ...

class RemoveRepositoryRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class RemoveRepositoryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RepositoryInfoRequest(_message.Message):
    __slots__ = ("repository", "refs_only")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REFS_ONLY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    refs_only: bool
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., refs_only: _Optional[bool] = ...) -> None: ...

class RepositoryInfoResponse(_message.Message):
    __slots__ = ("size_bytes", "ref_count", "default_branch", "loose_objects", "packfiles")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REF_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BRANCH_FIELD_NUMBER: _ClassVar[int]
    LOOSE_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    PACKFILES_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    ref_count: int
    default_branch: str
    loose_objects: int
    packfiles: int
    def __init__(self, size_bytes: _Optional[int] = ..., ref_count: _Optional[int] = ..., default_branch: _Optional[str] = ..., loose_objects: _Optional[int] = ..., packfiles: _Optional[int] = ...) -> None: ...

class RepositoryChecksumRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class RepositoryChecksumResponse(_message.Message):
    __slots__ = ("checksum",)
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    checksum: str
    def __init__(self, checksum: _Optional[str] = ...) -> None: ...

class OptimizeRepositoryRequest(_message.Message):
    __slots__ = ("repository", "prune")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PRUNE_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    prune: bool
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., prune: _Optional[bool] = ...) -> None: ...

class OptimizeRepositoryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicateRepositoryRequest(_message.Message):
    __slots__ = ("repository", "source", "source_node")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NODE_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    source: _shared_pb2.Repository
    source_node: _shared_pb2.NodeAddress
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., source: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., source_node: _Optional[_Union[_shared_pb2.NodeAddress, _Mapping]] = ...) -> None: ...

class ReplicateRepositoryResponse(_message.Message):
    __slots__ = ("created", "bytes_fetched", "checksum", "copied")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FETCHED_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    COPIED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    bytes_fetched: int
    checksum: str
    copied: bool
    def __init__(self, created: _Optional[bool] = ..., bytes_fetched: _Optional[int] = ..., checksum: _Optional[str] = ..., copied: _Optional[bool] = ...) -> None: ...

class ExportRepositoryRequest(_message.Message):
    __slots__ = ("repository", "limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class ExportedRef(_message.Message):
    __slots__ = ("name", "oid")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    name: str
    oid: str
    def __init__(self, name: _Optional[str] = ..., oid: _Optional[str] = ...) -> None: ...

class ObjectFile(_message.Message):
    __slots__ = ("name", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ExportRepositoryResponse(_message.Message):
    __slots__ = ("default_branch", "ref_count", "copyable", "refs", "files")
    DEFAULT_BRANCH_FIELD_NUMBER: _ClassVar[int]
    REF_COUNT_FIELD_NUMBER: _ClassVar[int]
    COPYABLE_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    default_branch: str
    ref_count: int
    copyable: bool
    refs: _containers.RepeatedCompositeFieldContainer[ExportedRef]
    files: _containers.RepeatedCompositeFieldContainer[ObjectFile]
    def __init__(self, default_branch: _Optional[str] = ..., ref_count: _Optional[int] = ..., copyable: _Optional[bool] = ..., refs: _Optional[_Iterable[_Union[ExportedRef, _Mapping]]] = ..., files: _Optional[_Iterable[_Union[ObjectFile, _Mapping]]] = ...) -> None: ...

class UploadPackSessionRequest(_message.Message):
    __slots__ = ("repository", "stdin", "git_protocol")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    GIT_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    stdin: bytes
    git_protocol: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., stdin: _Optional[bytes] = ..., git_protocol: _Optional[str] = ...) -> None: ...

class UploadPackSessionResponse(_message.Message):
    __slots__ = ("stdout", "stderr", "exited", "exit_status")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    exited: bool
    exit_status: int
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exited: _Optional[bool] = ..., exit_status: _Optional[int] = ...) -> None: ...
