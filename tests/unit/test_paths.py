from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import InvalidArgumentError
from common.paths import resolve_under, validate_relative_path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "../outside.git",
        "a/../../b.git",
        "a/..",
        "bad\x00name.git",
        "new\nline.git",
        "tab\there.git",
        "del\x7f.git",
        "back\\slash.git",
        "-upload-pack=evil.git",
        "group/--help.git",
        ".",
        "./",
        "a" * 5000,
        "a" * 4096,
        "é" * 3000,
        "x/" + "é" * 101,  # a segment of 202 bytes
        "c/" * 600,  # 1,200 bytes
        "bad\udc80.git",  # not UTF-8
        "g/a.git.gitraft-tmp-x",  # the node's temporary marker: its next start deleted it
        ".gitraft-tmp-/a.git",
    ],
)
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgumentError):
        validate_relative_path(path)


def test_long_paths_are_refused_with_a_short_message() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_relative_path("x/" + "é" * 150)
    assert "(152 characters)" in str(info.value) and len(str(info.value)) < 200
    assert validate_relative_path("é" * 100) == "é" * 100  # 200 bytes: the most a segment may hold


def test_an_absolute_path_is_refused_without_quoting_it() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_relative_path("/srv/secret/repo.git")
    assert "/srv" not in str(info.value)


@pytest.mark.parametrize(
    ("path", "clean"),
    [("group/project.git", "group/project.git"), ("./a//b.git", "a/b.git"), ("a.b-c_d.git", "a.b-c_d.git")],
)
def test_good_paths_are_normalised(path: str, clean: str) -> None:
    assert validate_relative_path(path) == clean


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(InvalidArgumentError):
        resolve_under(root, "link/repo.git")
    assert resolve_under(root, "ok/repo.git") == root.resolve() / "ok" / "repo.git"
