"""TOML configuration loading into dataclasses, with clear errors.

Every key has a default that suits a local cluster. Unknown keys, wrong types and
unreadable or malformed files raise ConfigError naming the file and the key.

Secrets need not sit in the file: for a string key `K` (e.g. `token`, `node_token`,
the `[raft]` table's `password`), `K_file = "/run/secrets/x"` reads the value from that
file (surrounding whitespace stripped). Giving both `K` and `K_file` is an error.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says where and why."""


def merge_tokens(token: str, tokens: list[str]) -> list[str]:
    """The accepted tokens of a process: `token` (the old single key) first, then
    `tokens`, without empties or repeats. The first one is the one the process sends."""
    merged: list[str] = []
    for t in [token, *tokens]:
        if t and t not in merged:
            merged.append(t)
    return merged


def required_tokens(where: str, token: str, tokens: list[str]) -> tuple[str, list[str]]:
    """(the token a process sends, every token it accepts) from its `token` and `tokens`
    keys (merge_tokens); ConfigError naming `where` when there is none."""
    merged = merge_tokens(token, tokens)
    if not merged:
        raise ConfigError(f"{where}: 'token' (or 'tokens') is required")
    return merged[0], merged


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read `path` (TOML) into the dataclass `cls`."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {str(p)!r}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed config file {str(p)!r}: {exc}") from exc
    return from_dict(cls, raw, where=str(p))


def from_dict(cls: type[T], raw: dict[str, Any], where: str = "config") -> T:
    """Build the dataclass `cls` from a mapping, checking keys and types recursively."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    raw = _read_secret_files(raw, {n for n in names if hints[n] is str}, where)
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
    kwargs = {name: _convert(hints[name], value, f"{where}: {name}") for name, value in raw.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _read_secret_files(raw: dict[str, Any], strings: set[str], where: str) -> dict[str, Any]:
    """`raw` with each `K_file` key (K a string field) replaced by K = the file's text."""
    out = dict(raw)
    for key in [k for k in raw if k.endswith("_file") and k.removesuffix("_file") in strings]:
        name, path = key.removesuffix("_file"), out.pop(key)
        if name in raw:
            raise ConfigError(f"{where}: give {name!r} or {key!r}, not both")
        if not isinstance(path, str):
            raise ConfigError(f"{where}: {key}: expected a file path, got {path!r}")
        try:
            out[name] = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{where}: {key}: cannot read {path!r}: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
    return out


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
            try:
                return _convert(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: unexpected value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg, *_) = typing.get_args(hint) or (Any,)
        items = [_convert(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        _, vt = typing.get_args(hint) or (Any, Any)
        return {k: _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    return value


def to_toml(config: Any, omit: tuple[str, ...] = (), skip_defaults: bool = False) -> str:
    """Serialise a config dataclass as TOML that `load_config` reads back unchanged
    (top-level keys in `omit` left out: ones derived from others at load; with
    `skip_defaults`, also every top-level key whose value is its field's default, so a
    caller may append its own settings for those keys).

    Scalars and lists of scalars are written as `key = value`; a nested dataclass or a
    mapping becomes a `[table]` (recursively); a list of dataclasses or mappings becomes
    an `[[array of tables]]`. `None` values are left out."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"{config!r} is not a dataclass instance")
    defaults = _defaults(type(config)) if skip_defaults else {}
    data = {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k not in omit and not (k in defaults and defaults[k] == getattr(config, k))
    }
    return "\n".join(_table_lines(data, prefix="")).lstrip("\n") + "\n"


def _defaults(cls: type) -> dict[str, Any]:
    """Field name -> default value, for the fields of `cls` that have one."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _is_section(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _table_lines(data: dict[str, Any], prefix: str) -> list[str]:
    lines = [f"{_key(k)} = {_toml_value(v)}" for k, v in data.items() if v is not None and not _is_section(v)]
    for key, value in data.items():
        if not _is_section(value):
            continue
        name = f"{prefix}{_key(key)}"
        if isinstance(value, dict):
            lines += ["", f"[{name}]", *_table_lines(value, prefix=f"{name}.")]
        else:
            for item in value:
                lines += ["", f"[[{name}]]", *_table_lines(item, prefix=f"{name}.")]
    return lines


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "")
    return key if bare.isascii() and bare.isalnum() else json.dumps(key)


def _toml_value(v: Any) -> str:
    if isinstance(v, Path):
        v = str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")
