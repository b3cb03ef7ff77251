from gitraft.v1 import lint_pb2 as _lint_pb2
from gitraft.v1 import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Commit(_message.Message):
    __slots__ = ("id", "tree_id", "parent_ids", "author", "committer", "message", "subject")
    ID_FIELD_NUMBER: _ClassVar[int]
    TREE_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_IDS_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    COMMITTER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tree_id: str
    parent_ids: _containers.RepeatedScalarFieldContainer[str]
    author: _shared_pb2.Signature
    committer: _shared_pb2.Signature
    message: bytes
    subject: str
    def __init__(self, id: _Optional[str] = ..., tree_id: _Optional[str] = ..., parent_ids: _Optional[_Iterable[str]] = ..., author: _Optional[_Union[_shared_pb2.Signature, _Mapping]] = ..., committer: _Optional[_Union[_shared_pb2.Signature, _Mapping]] = ..., message: _Optional[bytes] = ..., subject: _Optional[str] = ...) -> None: ...

class FindCommitRequest(_message.Message):
    __slots__ = ("repository", "revision")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[str] = ...) -> None: ...

class FindCommitResponse(_message.Message):
    __slots__ = ("commit",)
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    commit: Commit
    def __init__(self, commit: _Optional[_Union[Commit, _Mapping]] = ...) -> None: ...

class ListCommitsRequest(_message.Message):
    __slots__ = ("repository", "revision", "limit", "page_token")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: str
    limit: int
    page_token: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCommitsResponse(_message.Message):
    __slots__ = ("commits", "next_page_token")
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[Commit]
    next_page_token: str
    def __init__(self, commits: _Optional[_Iterable[_Union[Commit, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TreeEntryRequest(_message.Message):
    __slots__ = ("repository", "revision", "path", "limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: str
    path: str
    limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[str] = ..., path: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class TreeEntryResponse(_message.Message):
    __slots__ = ("type", "oid", "size", "mode", "data", "children")
    class EntryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENTRY_TYPE_UNSPECIFIED: _ClassVar[TreeEntryResponse.EntryType]
        BLOB: _ClassVar[TreeEntryResponse.EntryType]
        TREE: _ClassVar[TreeEntryResponse.EntryType]
        COMMIT: _ClassVar[TreeEntryResponse.EntryType]
    ENTRY_TYPE_UNSPECIFIED: TreeEntryResponse.EntryType
    BLOB: TreeEntryResponse.EntryType
    TREE: TreeEntryResponse.EntryType
    COMMIT: TreeEntryResponse.EntryType
    class Child(_message.Message):
        __slots__ = ("name", "oid", "type", "mode")
        NAME_FIELD_NUMBER: _ClassVar[int]
        OID_FIELD_NUMBER: _ClassVar[int]
        TYPE_FIELD_NUMBER: _ClassVar[int]
        MODE_FIELD_NUMBER: _ClassVar[int]
        name: str
        oid: str
        type: TreeEntryResponse.EntryType
        mode: int
        def __init__(self, name: _Optional[str] = ..., oid: _Optional[str] = ..., type: _Optional[_Union[TreeEntryResponse.EntryType, str]] = ..., mode: _Optional[int] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    type: TreeEntryResponse.EntryType
    oid: str
    size: int
    mode: int
    data: bytes
    children: _containers.RepeatedCompositeFieldContainer[TreeEntryResponse.Child]
    def __init__(self, type: _Optional[_Union[TreeEntryResponse.EntryType, str]] = ..., oid: _Optional[str] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ..., data: _Optional[bytes] = ..., children: _Optional[_Iterable[_Union[TreeEntryResponse.Child, _Mapping]]] = ...) -> None: ...

class GetBlobRequest(_message.Message):
    __slots__ = ("repository", "oid", "limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    oid: str
    limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., oid: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetBlobResponse(_message.Message):
    __slots__ = ("oid", "size", "data")
    OID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    oid: str
    size: int
    data: bytes
    def __init__(self, oid: _Optional[str] = ..., size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...
