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


def test_a_secret_is_read_from_a_file_named_by_key_file(tmp_path: Path) -> None:
    from common.config import load_config
    from node.config import NodeConfig

    (tmp_path / "token").write_text("s3cret\n")
    path = tmp_path / "node.toml"
    path.write_text(f'token_file = "{tmp_path / "token"}"\n')
    assert load_config(path, NodeConfig).token == "s3cret"


def test_a_secret_file_that_is_missing_or_doubled_is_a_clear_error(tmp_path: Path) -> None:
    from common.config import ConfigError, load_config
    from node.config import NodeConfig

    path = tmp_path / "node.toml"
    path.write_text(f'token_file = "{tmp_path / "absent"}"\n')
    with pytest.raises(ConfigError, match="token_file: cannot read"):
        load_config(path, NodeConfig)
    (tmp_path / "t").write_text("x")
    path.write_text(f'token = "y"\ntoken_file = "{tmp_path / "t"}"\n')
    with pytest.raises(ConfigError, match="not both"):
        load_config(path, NodeConfig)
