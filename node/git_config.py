"""Which git config a client may set on a node's git commands (`git_config_options`).

A client's `key=value` options become `git -c key=value` arguments of `upload-pack` /
`receive-pack`. `-c` is git's most trusted scope: it can name programs to run
(`core.fsmonitor`, `uploadpack.packObjectsHook`, `*.command`), files to read
(`*.skipList`, `include.path`), or turn the bare repository into a work tree that a push
checks out into (`core.bare=false` + `receive.denyCurrentBranch=updateInstead`, which
wrote and ran a pushed `hooks/post-receive`). So only the exact keys below pass, each
with a validated value; everything else is INVALID_ARGUMENT naming the key. The keys
are what GitLab sends through Gitaly's `git_config_options` (hidden refs, a push size
limit, partial clone):

    transfer.hideRefs        refs hidden from both advertisements (a ref prefix,
    uploadpack.hideRefs      optionally `!` negated and/or `^` for the full name);
    receive.hideRefs         GitLab hides its keep-around refs this way
    receive.maxInputSize     push size limit: an integer, optional k/m/g suffix
    uploadpack.allowFilter   partial clone (`--filter`): a boolean
    uploadpack.allowRefInWant  protocol v2 `want-ref`: a boolean
    uploadpack.keepAlive     seconds between keep-alive packets: 0..3600
    receive.advertisePushOptions  push options (`git push -o`): a boolean

Section and variable names match case-insensitively, as in git; keys with a subsection
never pass. At most MAX_OPTIONS options, keys of at most MAX_KEY_LENGTH and values of
at most MAX_VALUE_LENGTH characters, no control characters.

What must never change is pinned by `command_line` *after* the caller's and the
node's own options (the last `-c` wins), so not even an allowed key could override it:
PINNED (`core.bare=true`, `receive.denyCurrentBranch=refuse`, ...). Keys that cannot be
neutralised by a value (hook and command keys, `*.skipList`, `core.worktree`,
`core.sharedRepository`, `include.path`) are simply never allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from common.errors import InvalidArgumentError, quoted

MAX_OPTIONS = 32
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 256

# Appended after every other `-c`: the last one wins.
PINNED = (
    "core.bare=true",
    "receive.denyCurrentBranch=refuse",
    "receive.denyDeleteCurrent=refuse",
    "core.fsmonitor=false",
)

_BOOLEANS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})
_HIDE_REFS = re.compile(r"!?\^?refs(/[A-Za-z0-9._/@+-]*)?")
_SIZE = re.compile(r"[0-9]{1,12}[kmgKMG]?")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9-]*\.[A-Za-z][A-Za-z0-9-]*")


def _boolean(value: str) -> bool:
    return value.lower() in _BOOLEANS


def _hide_refs(value: str) -> bool:
    return _HIDE_REFS.fullmatch(value) is not None


def _size(value: str) -> bool:
    return _SIZE.fullmatch(value) is not None


def _seconds(value: str) -> bool:
    return value.isascii() and value.isdigit() and int(value) <= 3600


# lower-case key -> (key as git documents it, value check)
ALLOWED: dict[str, tuple[str, Callable[[str], bool]]] = {
    key.lower(): (key, check)
    for key, check in (
        ("transfer.hideRefs", _hide_refs),
        ("uploadpack.hideRefs", _hide_refs),
        ("receive.hideRefs", _hide_refs),
        ("receive.maxInputSize", _size),
        ("uploadpack.allowFilter", _boolean),
        ("uploadpack.allowRefInWant", _boolean),
        ("uploadpack.keepAlive", _seconds),
        ("receive.advertisePushOptions", _boolean),
    )
}


def validated_option(option: str) -> str:
    """`option` as `key=value` with the key spelled as git documents it; raises
    InvalidArgumentError naming the (truncated) key unless the key is allowed and its
    value valid."""
    key, sep, value = option.partition("=")
    if not sep or not key:
        raise InvalidArgumentError(f"git config option is not key=value: {quoted(option, MAX_KEY_LENGTH)}")
    allowed = ALLOWED.get(key.lower()) if len(key) <= MAX_KEY_LENGTH and _KEY.fullmatch(key) else None
    if allowed is None:
        raise InvalidArgumentError(
            f"git config key not allowed: {quoted(key, MAX_KEY_LENGTH)} (allowed: {', '.join(_names())})"
        )
    name, check = allowed
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidArgumentError(f"git config value of {name!r} too long: {len(value)} characters")
    if not check(value):
        shown = quoted(value, MAX_KEY_LENGTH)
        raise InvalidArgumentError(f"invalid value for git config key {name!r}: {shown}")
    return f"{name}={value}"


def validated(options: Sequence[str]) -> list[str]:
    """Every option through `validated_option`, after the count check."""
    if len(options) > MAX_OPTIONS:
        raise InvalidArgumentError(f"too many git config options: {len(options)} (at most {MAX_OPTIONS})")
    return [validated_option(option) for option in options]


def command_line(options: Sequence[str], node_options: Iterable[str] = ()) -> list[str]:
    """`-c` arguments: the caller's `options` (validated), then the node's own
    `node_options`, then PINNED, so that the node's settings win."""
    args: list[str] = []
    for option in (*validated(options), *node_options, *PINNED):
        args += ["-c", option]
    return args


def _names() -> list[str]:
    return [name for name, _ in ALLOWED.values()]
