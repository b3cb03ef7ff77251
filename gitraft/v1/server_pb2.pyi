from gitraft.v1 import lint_pb2 as _lint_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ServerInfoRequest(_message.Message):
    __slots__ = ("check_writable",)
    CHECK_WRITABLE_FIELD_NUMBER: _ClassVar[int]
    check_writable: bool
    def __init__(self, check_writable: _Optional[bool] = ...) -> None: ...

class ServerInfoResponse(_message.Message):
    __slots__ = ("server_version", "git_version", "storage_name", "free_bytes", "storage_writable", "storage_error")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    GIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    STORAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_WRITABLE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_ERROR_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    git_version: str
    storage_name: str
    free_bytes: int
    storage_writable: bool
    storage_error: str
    def __init__(self, server_version: _Optional[str] = ..., git_version: _Optional[str] = ..., storage_name: _Optional[str] = ..., free_bytes: _Optional[int] = ..., storage_writable: _Optional[bool] = ..., storage_error: _Optional[str] = ...) -> None: ...

class ListStorageRepositoriesRequest(_message.Message):
    __slots__ = ("storage_name",)
    STORAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    storage_name: str
    def __init__(self, storage_name: _Optional[str] = ...) -> None: ...

class ListStorageRepositoriesResponse(_message.Message):
    __slots__ = ("relative_paths",)
    RELATIVE_PATHS_FIELD_NUMBER: _ClassVar[int]
    relative_paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, relative_paths: _Optional[_Iterable[str]] = ...) -> None: ...
