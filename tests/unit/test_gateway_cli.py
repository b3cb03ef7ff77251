"""`gitraft gateway`: argument parsing and token files (no server started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.cli import gateway as cli
from cluster.cli.main import build_parser, main


def test_registered_with_help_and_example() -> None:
    args = build_parser().parse_args(
        ["gateway", "--upstream", "127.0.0.1:1", "--upstream-token-file", "a", "--token-file", "b"]
    )
    assert args.func is cli.run
    assert args.listen == "127.0.0.1:8080"
    assert "example:" in cli.EXAMPLE


@pytest.mark.parametrize(("listen", "parsed"), [("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:80", ("::1", 80))])
def test_parse_listen(listen: str, parsed: tuple[str, int]) -> None:
    assert cli.parse_listen(listen) == parsed


@pytest.mark.parametrize("listen", ["8080", ":80", "host:", "host:x", "host:70000"])
def test_parse_listen_refuses(listen: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        cli.parse_listen(listen)


def test_read_token(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("  secret\n")
    (tmp_path / "empty").write_text("\n")
    assert cli.read_token(str(tmp_path / "t")) == "secret"
    with pytest.raises(ValueError, match="empty"):
        cli.read_token(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="cannot read"):
        cli.read_token(str(tmp_path / "missing"))


def test_unusable_token_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["gateway", "--upstream", "127.0.0.1:1", "--upstream-token-file", str(tmp_path / "none")]
    assert main([*argv, "--token-file", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gitraft gateway: cannot read token file") and err.count("\n") == 1
