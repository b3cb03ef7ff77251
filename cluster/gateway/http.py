"""Pure helpers of the git smart-HTTP gateway: no I/O, easy to test.

- `repository_path`: URL path -> repository relative path (always ending in `.git`).
- `basic_auth_ok`: HTTP basic auth where the password is a token, any user name.
- `http_status_for`: gRPC status code -> HTTP status the git client understands.
- `service_preamble`: the v0 `# service=` pkt-lines, or nothing for protocol v2.
"""

from __future__ import annotations

import base64
import binascii

import grpc

from common.auth import Tokens, any_token_equal, token_list
from common.paths import validate_relative_path

UPLOAD_PACK = "git-upload-pack"
RECEIVE_PACK = "git-receive-pack"
SERVICES = (UPLOAD_PACK, RECEIVE_PACK)

# Status for a gRPC error from upstream. UNAUTHENTICATED means the *gateway's* token was
# refused: 403, not 401, so git does not ask its user for a password that cannot help.
# FAILED_PRECONDITION is what the cluster answers for an unavailable repository (data
# loss pending): 503 with the message, the client may retry later.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 403,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.FAILED_PRECONDITION: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def repository_path(url_path: str) -> str:
    """The repository relative path named by `url_path` (the part before /info/refs).

    `group/repo` and `group/repo.git` name the same repository, `group/repo.git`.
    Raises InvalidArgumentError for a path that common.paths refuses.
    """
    clean = validate_relative_path(url_path)
    return clean if clean.endswith(".git") else f"{clean}.git"


def basic_auth_ok(header: str | None, tokens: Tokens) -> bool:
    """Whether an Authorization header carries one of `tokens` as the basic-auth
    password (any user name).

    No token at all disables the check (every request passes).
    """
    if not token_list(tokens):
        return True
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    _, sep, password = decoded.partition(b":")
    return bool(sep) and any_token_equal(password, tokens)


def http_status_for(code: grpc.StatusCode | None) -> int:
    """The HTTP status for a failed upstream call (500 for codes without a better one)."""
    return _HTTP_STATUS.get(code, 500) if code is not None else 500


def wants_v2(git_protocol: str) -> bool:
    """Whether a Git-Protocol header value asks for protocol version 2."""
    return "version=2" in git_protocol.split(":")


def pkt_line(data: bytes) -> bytes:
    """`data` framed as one pkt-line."""
    return f"{len(data) + 4:04x}".encode() + data


def service_preamble(service: str, git_protocol: str) -> bytes:
    """What the gateway writes before an info/refs advertisement (nothing for v2)."""
    if wants_v2(git_protocol):
        return b""
    return pkt_line(f"# service={service}\n".encode()) + b"0000"


def advertisement_type(service: str) -> str:
    return f"application/x-{service}-advertisement"


def request_type(service: str) -> str:
    return f"application/x-{service}-request"


def result_type(service: str) -> str:
    return f"application/x-{service}-result"
