"""The one exception tree of gitraft, and its translation to and from gRPC status.

    GitraftError                      INTERNAL
    +-- InvalidArgumentError          INVALID_ARGUMENT   bad path, ref name, request
    +-- NotFoundError                 NOT_FOUND
    +-- AlreadyExistsError            ALREADY_EXISTS
    +-- FailedPreconditionError       FAILED_PRECONDITION (old value mismatch, data loss pending)
    +-- UnauthenticatedError          UNAUTHENTICATED
    +-- UnavailableError              UNAVAILABLE        only where a retry is safe
    +-- DeadlineExceededError         DEADLINE_EXCEEDED  outcome unknown
    +-- ResourceExhaustedError        RESOURCE_EXHAUSTED a concurrency limit; retry later

Code raises these; the server interceptor (`common.interceptors`) turns them into
status codes at the boundary, and `raise_from_rpc_error` turns a client-side
`grpc.RpcError` back into one. Messages are short, lower-case and quote the offending
value with `!r` - through `quoted` when the value comes from a client, so that a long
path or value is cut. `client_message` is the last guard before a message leaves a
process: it replaces absolute paths by `<path>` and bounds the length (gRPC refuses a
status whose message exceeds its 16 KiB metadata limit and sends RESOURCE_EXHAUSTED
instead). Servers log the full detail; clients get the short form.
"""

from __future__ import annotations

import re

import grpc

# Characters of a client's value quoted in a message, and of a whole message.
MAX_QUOTED = 100
MAX_MESSAGE = 1000
# An absolute path: a `/` not preceded by a word, a dot or another path character,
# then at least one character that is not a space, a quote or a separator.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/@-])/[^\s'\",;)\]]+")


def quoted(value: object, limit: int = MAX_QUOTED) -> str:
    """`repr` of `value` (as text), cut to `limit` characters, with the full length
    said when cut: `'aaaa'... (4096 characters)`."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def hide_paths(text: str) -> str:
    """`text` with every absolute path replaced by `<path>`."""
    return _ABSOLUTE_PATH.sub("<path>", text)


def client_message(text: str) -> str:
    """`text` fit for a client: absolute paths replaced by `<path>`, at most MAX_MESSAGE
    characters."""
    text = hide_paths(text)
    if len(text) > MAX_MESSAGE:
        suffix = f"... ({len(text)} characters)"
        text = text[: MAX_MESSAGE - len(suffix)] + suffix
    return text


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


class ResourceExhaustedError(GitraftError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


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
        ResourceExhaustedError,
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
