"""Pure helpers of the gateway: paths, basic auth, status mapping, v0 preamble."""

from __future__ import annotations

import base64

import grpc
import pytest

from cluster.gateway import http as gh
from common.errors import InvalidArgumentError


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("url_path", "relative"),
    [("group/repo.git", "group/repo.git"), ("group/repo", "group/repo.git"), ("a//b/./c", "a/b/c.git")],
)
def test_repository_path_normalises_and_adds_dot_git(url_path: str, relative: str) -> None:
    assert gh.repository_path(url_path) == relative


@pytest.mark.parametrize("url_path", ["../x.git", "a/../../x", "/etc/passwd", "-x.git", "a\\b", "a\0b", ""])
def test_repository_path_refuses_what_could_leave_the_storage(url_path: str) -> None:
    with pytest.raises(InvalidArgumentError):
        gh.repository_path(url_path)


def test_basic_auth_wants_the_token_as_password_with_any_user() -> None:
    assert gh.basic_auth_ok(basic("anyone", "tok"), "tok")
    assert gh.basic_auth_ok(basic("", "tok"), "tok")
    assert gh.basic_auth_ok(basic("a", "to:k"), "to:k")
    for header in (None, "", basic("tok", ""), basic("x", "wrong"), "Bearer tok", "Basic !!", "Basic"):
        assert not gh.basic_auth_ok(header, "tok"), header


def test_empty_token_disables_basic_auth() -> None:
    assert gh.basic_auth_ok(None, "")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 403),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.FAILED_PRECONDITION, 503),
        (grpc.StatusCode.INTERNAL, 500),
        (None, 500),
    ],
)
def test_http_status_for_grpc_codes(code: grpc.StatusCode | None, status: int) -> None:
    assert gh.http_status_for(code) == status


def test_service_preamble_only_for_v0() -> None:
    assert gh.service_preamble(gh.UPLOAD_PACK, "") == b"001e# service=git-upload-pack\n0000"
    assert gh.service_preamble(gh.RECEIVE_PACK, "") == b"001f# service=git-receive-pack\n0000"
    assert gh.service_preamble(gh.UPLOAD_PACK, "version=2") == b""
    assert gh.service_preamble(gh.UPLOAD_PACK, "foo=bar:version=2") == b""
    assert gh.service_preamble(gh.UPLOAD_PACK, "version=1") != b""


def test_content_types() -> None:
    assert gh.advertisement_type(gh.UPLOAD_PACK) == "application/x-git-upload-pack-advertisement"
    assert gh.request_type(gh.RECEIVE_PACK) == "application/x-git-receive-pack-request"
    assert gh.result_type(gh.UPLOAD_PACK) == "application/x-git-upload-pack-result"
