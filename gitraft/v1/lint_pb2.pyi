from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
OP_TYPE_FIELD_NUMBER: _ClassVar[int]
op_type: _descriptor.FieldDescriptor
NODE_INTERNAL_FIELD_NUMBER: _ClassVar[int]
node_internal: _descriptor.FieldDescriptor
TARGET_REPOSITORY_FIELD_NUMBER: _ClassVar[int]
target_repository: _descriptor.FieldDescriptor
ADDITIONAL_REPOSITORY_FIELD_NUMBER: _ClassVar[int]
additional_repository: _descriptor.FieldDescriptor
STORAGE_FIELD_NUMBER: _ClassVar[int]
storage: _descriptor.FieldDescriptor

class OperationMsg(_message.Message):
    __slots__ = ("op", "scope_level")
    class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[OperationMsg.Operation]
        MUTATOR: _ClassVar[OperationMsg.Operation]
        ACCESSOR: _ClassVar[OperationMsg.Operation]
        MAINTENANCE: _ClassVar[OperationMsg.Operation]
    UNKNOWN: OperationMsg.Operation
    MUTATOR: OperationMsg.Operation
    ACCESSOR: OperationMsg.Operation
    MAINTENANCE: OperationMsg.Operation
    class Scope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SCOPE_UNSPECIFIED: _ClassVar[OperationMsg.Scope]
        REPOSITORY: _ClassVar[OperationMsg.Scope]
        STORAGE: _ClassVar[OperationMsg.Scope]
        SERVER: _ClassVar[OperationMsg.Scope]
    SCOPE_UNSPECIFIED: OperationMsg.Scope
    REPOSITORY: OperationMsg.Scope
    STORAGE: OperationMsg.Scope
    SERVER: OperationMsg.Scope
    OP_FIELD_NUMBER: _ClassVar[int]
    SCOPE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    op: OperationMsg.Operation
    scope_level: OperationMsg.Scope
    def __init__(self, op: _Optional[_Union[OperationMsg.Operation, str]] = ..., scope_level: _Optional[_Union[OperationMsg.Scope, str]] = ...) -> None: ...
