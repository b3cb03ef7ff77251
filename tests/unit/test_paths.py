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
    ],
)
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgumentError):
        validate_relative_path(path)


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
