from gitraft.v1 import lint_pb2 as _lint_pb2
from gitraft.v1 import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InfoRefsRequest(_message.Message):
    __slots__ = ("repository", "git_protocol", "git_config_options")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    GIT_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    GIT_CONFIG_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    git_protocol: str
    git_config_options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., git_protocol: _Optional[str] = ..., git_config_options: _Optional[_Iterable[str]] = ...) -> None: ...

class InfoRefsResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class PostUploadPackRequest(_message.Message):
    __slots__ = ("repository", "data", "git_protocol", "git_config_options")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    GIT_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    GIT_CONFIG_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    data: bytes
    git_protocol: str
    git_config_options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., data: _Optional[bytes] = ..., git_protocol: _Optional[str] = ..., git_config_options: _Optional[_Iterable[str]] = ...) -> None: ...

class PostUploadPackResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class PostReceivePackRequest(_message.Message):
    __slots__ = ("repository", "data", "git_protocol", "git_config_options")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    GIT_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    GIT_CONFIG_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    data: bytes
    git_protocol: str
    git_config_options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., data: _Optional[bytes] = ..., git_protocol: _Optional[str] = ..., git_config_options: _Optional[_Iterable[str]] = ...) -> None: ...

class PostReceivePackResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
