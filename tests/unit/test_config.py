from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError
from node.config import load_node_config


def test_node_config_loads(tmp_path: Path) -> None:
    p = tmp_path / "n.toml"
    p.write_text('name = "node-x"\ntoken = "t"\nstorage_path = "/tmp/x"\nshutdown_grace = 1\n')
    cfg = load_node_config(p)
    assert cfg.name == "node-x"
    assert cfg.storage_path == Path("/tmp/x")
    assert cfg.shutdown_grace == 1.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('name = "a"\ntoken = "t"\nbogus = 1\n', "unknown key"),
        ('name = "a"\ntoken = "t"\nshutdown_grace = "soon"\n', "shutdown_grace"),
        ('name = "a"\n', "token"),
        ("name = [unterminated\n", "malformed"),
    ],
)
def test_broken_node_configs_say_why(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "n.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_node_config(p)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_node_config(tmp_path / "nope.toml")
