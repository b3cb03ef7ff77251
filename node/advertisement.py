"""Cached protocol v2 capability advertisements of `git upload-pack`.

With protocol v2, `upload-pack --advertise-refs` (the answer to GET info/refs) lists
only capabilities (agent, ls-refs, fetch=..., object-format...): no refs. What it says
depends on the git binary, the environment and options the node runs it with, and the
repository's own config file (e.g. its object format), never on the repository's refs
or objects. So a node runs it once per distinct (service, protocol, options, config
file contents) and answers later requests from memory: every v2 fetch, clone or
ls-remote then costs the node one git process instead of two.

Protocol v0 advertisements list the refs and are never cached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

MAX_ENTRIES = 1024  # keyed per repository: ~0.3 KB each
MAX_BYTES = 64 * 1024  # one advertisement; a capability list is a few hundred bytes

Key = tuple[str, str, tuple[str, ...], bytes]


def is_v2(git_protocol: str) -> bool:
    """Whether a GIT_PROTOCOL value asks for protocol version 2."""
    return "version=2" in git_protocol.split(":")


class AdvertisementCache:
    """Least-recently-used map of v2 advertisements (at most MAX_ENTRIES)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, bytes] = OrderedDict()

    @staticmethod
    def key(service: str, git_protocol: str, args: Sequence[str], repository: Path) -> Key | None:
        """The cache key of an advertisement, or None when it must not be cached
        (not upload-pack, not protocol v2, or an unreadable repository config)."""
        if service != "upload-pack" or not is_v2(git_protocol):
            return None
        try:
            config = (repository / "config").read_bytes()
        except OSError:
            return None
        return (service, git_protocol, tuple(args), config)

    def get(self, key: Key) -> bytes | None:
        data = self._entries.get(key)
        if data is not None:
            self._entries.move_to_end(key)
        return data

    def put(self, key: Key, data: bytes) -> None:
        """Remember `data` for `key`, unless it is large or names a session (a repository
        with `transfer.advertiseSID` gets a fresh session id each time)."""
        if len(data) > MAX_BYTES or b"session-id=" in data:
            return
        self._entries[key] = data
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
