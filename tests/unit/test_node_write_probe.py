"""node.server_service.write_probe: ServerInfo's storage writability check."""

from __future__ import annotations

from pathlib import Path

from node.server_service import find_repositories, write_probe


def test_a_writable_storage_passes_and_keeps_no_file(tmp_path: Path) -> None:
    assert write_probe(tmp_path) == ""
    assert list(tmp_path.iterdir()) == []


def test_a_storage_that_cannot_be_written_says_why_without_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    error = write_probe(missing)
    assert error == "No such file or directory"
    assert str(tmp_path) not in error
    assert list(find_repositories(tmp_path)) == []
