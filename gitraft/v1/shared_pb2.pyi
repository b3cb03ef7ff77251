from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Repository(_message.Message):
    __slots__ = ("storage_name", "relative_path")
    STORAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    storage_name: str
    relative_path: str
    def __init__(self, storage_name: _Optional[str] = ..., relative_path: _Optional[str] = ...) -> None: ...

class ObjectId(_message.Message):
    __slots__ = ("hex",)
    HEX_FIELD_NUMBER: _ClassVar[int]
    hex: str
    def __init__(self, hex: _Optional[str] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("name", "email", "time", "offset_minutes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MINUTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    email: str
    time: int
    offset_minutes: int
    def __init__(self, name: _Optional[str] = ..., email: _Optional[str] = ..., time: _Optional[int] = ..., offset_minutes: _Optional[int] = ...) -> None: ...

class NodeAddress(_message.Message):
    __slots__ = ("name", "address", "token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    token: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...
