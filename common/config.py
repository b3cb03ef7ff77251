"""TOML configuration loading into dataclasses, with clear errors.

Every key has a default that suits a local cluster. Unknown keys, wrong types and
unreadable or malformed files raise ConfigError naming the file and the key.

Secrets need not sit in the file: for a string key `K` (e.g. `token`, `node_token`,
the `[raft]` table's `password`), `K_file = "/run/secrets/x"` reads the value from that
file (surrounding whitespace stripped). Giving both `K` and `K_file` is an error.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says where and why."""


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
