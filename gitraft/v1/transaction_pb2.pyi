from gitraft.v1 import lint_pb2 as _lint_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VoteTransactionRequest(_message.Message):
    __slots__ = ("transaction_id", "storage", "reference_updates_hash", "phase")
    class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN_PHASE: _ClassVar[VoteTransactionRequest.Phase]
        PREPARED: _ClassVar[VoteTransactionRequest.Phase]
        COMMITTED: _ClassVar[VoteTransactionRequest.Phase]
    UNKNOWN_PHASE: VoteTransactionRequest.Phase
    PREPARED: VoteTransactionRequest.Phase
    COMMITTED: VoteTransactionRequest.Phase
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_UPDATES_HASH_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    transaction_id: int
    storage: str
    reference_updates_hash: bytes
    phase: VoteTransactionRequest.Phase
    def __init__(self, transaction_id: _Optional[int] = ..., storage: _Optional[str] = ..., reference_updates_hash: _Optional[bytes] = ..., phase: _Optional[_Union[VoteTransactionRequest.Phase, str]] = ...) -> None: ...

class VoteTransactionResponse(_message.Message):
    __slots__ = ("outcome",)
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        COMMIT: _ClassVar[VoteTransactionResponse.Outcome]
        ABORT: _ClassVar[VoteTransactionResponse.Outcome]
        STOP: _ClassVar[VoteTransactionResponse.Outcome]
    COMMIT: VoteTransactionResponse.Outcome
    ABORT: VoteTransactionResponse.Outcome
    STOP: VoteTransactionResponse.Outcome
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: VoteTransactionResponse.Outcome
    def __init__(self, outcome: _Optional[_Union[VoteTransactionResponse.Outcome, str]] = ...) -> None: ...

class StopTransactionRequest(_message.Message):
    __slots__ = ("transaction_id",)
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: int
    def __init__(self, transaction_id: _Optional[int] = ...) -> None: ...

class StopTransactionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
