from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cluster.local.layout import node_toml
from common.config import ConfigError, load_config, to_toml
from node.config import NodeConfig, load_node_config


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


@dataclasses.dataclass
class Limit:
    rpc: str = ""
    max_in_flight: int = 0


@dataclasses.dataclass
class Sample:
    name: str = "x"
    ratio: float = 0.5
    on: bool = True
    path: Path = Path("/tmp/a b")
    tags: list[str] = dataclasses.field(default_factory=list)
    names: dict[str, str] = dataclasses.field(default_factory=dict)
    limits: list[Limit] = dataclasses.field(default_factory=list)
    nested: Limit = dataclasses.field(default_factory=Limit)


def test_to_toml_round_trips_nested_tables_arrays_and_quoted_keys(tmp_path: Path) -> None:
    value = Sample(
        tags=["a", 'q"uote'],
        names={"127.0.0.1:7002": "proxy-2"},
        limits=[Limit("/a.B/C", 2), Limit("/a.B/D", 3)],
        nested=Limit("n", 1),
    )
    p = tmp_path / "s.toml"
    p.write_text(to_toml(value))
    assert load_config(p, Sample) == value


def test_node_toml_is_the_node_config(tmp_path: Path) -> None:
    p = tmp_path / "n.toml"
    p.write_text(node_toml("node-q", "127.0.0.1:1234", tmp_path / "s", "tok", "127.0.0.1:1235", "debug"))
    assert load_node_config(p) == NodeConfig(
        name="node-q",
        listen_addr="127.0.0.1:1234",
        storage_path=tmp_path / "s",
        token="tok",
        metrics_addr="127.0.0.1:1235",
        log_level="debug",
    )


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


def test_node_toml_writes_only_what_differs_from_the_defaults_so_settings_can_be_appended(
    tmp_path: Path,
) -> None:
    text = node_toml("node-q", "127.0.0.1:1234", tmp_path / "s", "tok")
    assert "replication_timeout" not in text and "concurrency" not in text and "tokens" not in text
    p = tmp_path / "n.toml"
    p.write_text(text + "replication_timeout = 2.0\n")
    assert load_node_config(p).replication_timeout == 2.0
