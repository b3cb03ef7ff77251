"""The one exception tree of gitraft, and its translation to and from gRPC status.

    GitraftError                      INTERNAL
    +-- InvalidArgumentError          INVALID_ARGUMENT   bad path, ref name, request
    +-- NotFoundError                 NOT_FOUND
    +-- AlreadyExistsError            ALREADY_EXISTS
    +-- FailedPreconditionError       FAILED_PRECONDITION (old value mismatch, data loss pending)
    +-- UnauthenticatedError          UNAUTHENTICATED
    +-- UnavailableError              UNAVAILABLE        only where a retry is safe
    +-- DeadlineExceededError         DEADLINE_EXCEEDED  outcome unknown

Code raises these; the server interceptor (`common.interceptors`) turns them into
status codes at the boundary, and `raise_from_rpc_error` turns a client-side
`grpc.RpcError` back into one. Messages are short, lower-case and quote the offending
value with `!r`.
"""

from __future__ import annotations

import grpc


class GitraftError(Exception):
    """Base class; maps to INTERNAL."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgumentError(GitraftError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(GitraftError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(GitraftError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(GitraftError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class UnauthenticatedError(GitraftError):
    code = grpc.StatusCode.UNAUTHENTICATED


class UnavailableError(GitraftError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(GitraftError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


_BY_CODE: dict[grpc.StatusCode, type[GitraftError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        UnauthenticatedError,
        UnavailableError,
        DeadlineExceededError,
    )
}


def error_for_status(code: grpc.StatusCode, message: str) -> GitraftError:
    """The exception class for a gRPC status code (GitraftError for unmapped codes)."""
    return _BY_CODE.get(code, GitraftError)(message)


def raise_from_rpc_error(exc: grpc.RpcError) -> None:
    """Re-raise a client-side gRPC error as our exception (`raise ... from exc`)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    raise error_for_status(code, details or str(code)) from exc
