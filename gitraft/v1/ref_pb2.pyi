from gitraft.v1 import lint_pb2 as _lint_pb2
from gitraft.v1 import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ref(_message.Message):
    __slots__ = ("name", "target", "symbolic_target")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SYMBOLIC_TARGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: str
    symbolic_target: str
    def __init__(self, name: _Optional[str] = ..., target: _Optional[str] = ..., symbolic_target: _Optional[str] = ...) -> None: ...

class ListRefsRequest(_message.Message):
    __slots__ = ("repository", "patterns", "head")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    patterns: _containers.RepeatedScalarFieldContainer[str]
    head: bool
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., patterns: _Optional[_Iterable[str]] = ..., head: _Optional[bool] = ...) -> None: ...

class ListRefsResponse(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedCompositeFieldContainer[Ref]
    def __init__(self, refs: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ...) -> None: ...

class FindDefaultBranchRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class FindDefaultBranchResponse(_message.Message):
    __slots__ = ("name", "target")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: str
    def __init__(self, name: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class ReferenceUpdate(_message.Message):
    __slots__ = ("ref", "old_oid", "new_oid")
    REF_FIELD_NUMBER: _ClassVar[int]
    OLD_OID_FIELD_NUMBER: _ClassVar[int]
    NEW_OID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    old_oid: str
    new_oid: str
    def __init__(self, ref: _Optional[str] = ..., old_oid: _Optional[str] = ..., new_oid: _Optional[str] = ...) -> None: ...

class UpdateReferencesRequest(_message.Message):
    __slots__ = ("repository", "updates")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    updates: _containers.RepeatedCompositeFieldContainer[ReferenceUpdate]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., updates: _Optional[_Iterable[_Union[ReferenceUpdate, _Mapping]]] = ...) -> None: ...

class UpdateReferencesResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
