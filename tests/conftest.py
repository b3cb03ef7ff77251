"""Fixtures shared by every tier."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.testing.workers import use_worker_slice

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
# git must never read the developer's config or prompt in tests.
os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
os.environ["GIT_TERMINAL_PROMPT"] = "0"
os.environ.setdefault("GIT_AUTHOR_NAME", "gitraft tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@gitraft.invalid")
os.environ.setdefault("GIT_COMMITTER_NAME", "gitraft tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@gitraft.invalid")


@pytest.fixture
def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def git_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty HOME so git reads no user config."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    yield home


# Under pytest-xdist (`make test`), this worker picks ports in its own slice.
use_worker_slice()
