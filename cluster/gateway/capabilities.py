"""Protocol v2 capability advertisements remembered by the gateway inside a proxy.

With protocol v2, the answer to `GET info/refs?service=git-upload-pack` lists only
capabilities (agent, ls-refs, fetch=..., object-format): no refs, nothing a write
changes (node.advertisement states why; nodes cache it too). Every v2 fetch, clone and
ls-remote starts with it, so the gateway inside a proxy keeps each repository's answer
for TTL seconds and serves it again while its local metadata still has the repository
under the same id: no Raft read barrier, no node call. Refs are read by the POST that
follows, which takes the usual fresh path (barrier, up-to-date replica), so no read of
refs is ever stale. A repository this proxy does not know yet (or any more) always
takes the fresh path, so a newly created repository is found and a removed one is 404
once the removal applied here. A repository's own config (its object format, or
`transfer.advertiseSID`) can change what it advertises: an answer naming a session is
never kept, and any other change is seen within TTL seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

TTL = 30.0
MAX_ENTRIES = 1024
MAX_BYTES = 64 * 1024

Key = tuple[str, str]  # (repository_id, git_protocol)


def is_v2(git_protocol: str) -> bool:
    """Whether a Git-Protocol value asks for protocol version 2."""
    return "version=2" in git_protocol.split(":")


class CapabilityCache:
    """Least-recently-used map (repository_id, git_protocol) -> advertisement, each
    entry kept at most `ttl` seconds (by `clock`)."""

    def __init__(
        self, ttl: float = TTL, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, bytes]] = OrderedDict()

    def get(self, key: Key) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, data = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return data

    def put(self, key: Key, data: bytes) -> None:
        """Keep `data` for `key`, unless it is large or names a session."""
        if len(data) > MAX_BYTES or b"session-id=" in data:
            return
        self._entries[key] = (self._clock() + self.ttl, data)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
