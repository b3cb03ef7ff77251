"""What `git receive-pack` tells the client, without the node's disk layout.

git names files by their absolute path in the messages a push's client sees - e.g.
`error: cannot lock ref 'refs/heads/main': Unable to create
'/srv/gitraft/storage/group/a.git/./refs/heads/main.lock': File exists.` when two
pushes update one branch at once - and receive-pack relays them in the answer
(sideband band 2 or 3, shown as `remote: ...`). `without_local_paths` rewrites them:
the repository's own directory becomes its relative path (what the client asked for),
and any other absolute path `<path>` (common.errors.hide_paths).

receive-pack's answer to `--stateless-rpc` is pkt-lines only, so each message is one
pkt-line and is re-framed with its new length. Band 1 (the report-status, itself
pkt-lines, when the client asked for a sideband) is passed through untouched. An answer
that stops looking like pkt-lines is passed through unchanged from there on.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

from common.errors import hide_paths

_HEADER = re.compile(rb"[0-9a-fA-F]{4}")
DATA_BAND = 1
MAX_PAYLOAD = 65516  # git's largest pkt-line (65520) less its header


async def without_local_paths(chunks: AsyncIterator[bytes], path: Path, shown: str) -> AsyncIterator[bytes]:
    """`chunks` of receive-pack's answer for the repository at `path` (shown to the
    client as `shown`), with local paths rewritten in its messages."""
    place = str(path)
    pending = b""
    framed = True  # False once the answer stopped looking like pkt-lines
    async for chunk in chunks:
        if not framed:
            yield chunk
            continue
        pending += chunk
        out = bytearray()
        while len(pending) >= 4:
            if _HEADER.fullmatch(pending[:4]) is None:
                framed = False
                break
            length = int(pending[:4], 16)
            if length < 4:  # flush, delimiter, response end
                out += pending[:4]
                pending = pending[4:]
            elif len(pending) >= length:
                out += _rewritten(pending[4:length], place, shown)
                pending = pending[length:]
            else:
                break
        if not framed:
            out += pending
            pending = b""
        if out:
            yield bytes(out)
    if pending:
        yield pending


def _rewritten(payload: bytes, place: str, shown: str) -> bytes:
    """One pkt-line (header included) carrying `payload`, its message rewritten."""
    if payload[:1] != bytes([DATA_BAND]) and b"/" in payload:
        text = payload.decode("utf-8", errors="surrogateescape")
        new = hide_paths(text.replace(place, shown)).encode("utf-8", errors="surrogateescape")
        if len(new) <= MAX_PAYLOAD:
            payload = new
    return f"{len(payload) + 4:04x}".encode() + payload
