"""node.answer_filter: receive-pack's messages lose the node's paths, the rest of the
answer is byte for byte git's, whatever the chunking."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.answer_filter import without_local_paths

REPO = Path("/srv/gitraft/storage/group/a.git")


def pkt(payload: bytes) -> bytes:
    return f"{len(payload) + 4:04x}".encode() + payload


def band(number: int, text: bytes) -> bytes:
    return pkt(bytes([number]) + text)


def lines(data: bytes) -> list[bytes]:
    """The pkt-lines of `data` (their payloads; b'' for a flush); fails on bad framing."""
    out = []
    while data:
        length = int(data[:4], 16)
        out.append(data[4:length] if length >= 4 else b"")
        data = data[max(length, 4) :]
    return out


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def filtered(data: bytes, size: int) -> bytes:
    return b"".join([c async for c in without_local_paths(chunked(data, size), REPO, "group/a.git")])


LOCKED = (
    b"error: cannot lock ref 'refs/heads/main': Unable to create "
    b"'/srv/gitraft/storage/group/a.git/./refs/heads/main.lock': File exists.\n"
)
REPORT = pkt(b"unpack ok\n") + pkt(b"ng refs/heads/main failed to update ref /not/touched\n") + b"0000"


@pytest.mark.parametrize("size", [1, 3, 7, 4096])
async def test_messages_lose_the_paths_and_the_report_is_untouched(size: int) -> None:
    answer = band(2, LOCKED) + band(3, b"fatal: /usr/lib/git-core/x failed\n") + band(1, REPORT) + b"0000"
    out = await filtered(answer, size)
    assert lines(out) == [
        bytes([2]) + LOCKED.replace(b"/srv/gitraft/storage/group/a.git", b"group/a.git"),
        bytes([3]) + b"fatal: <path> failed\n",
        bytes([1]) + REPORT,
        b"",
    ]
    assert b"/srv" not in out and b"/usr" not in out


async def test_a_report_without_sideband_is_rewritten_line_by_line() -> None:
    answer = pkt(b"unpack error /srv/gitraft/storage/group/a.git/objects\n") + b"0000"
    assert lines(await filtered(answer, 5)) == [b"unpack error group/a.git/objects\n", b""]


async def test_an_answer_that_is_not_pkt_lines_passes_through_unchanged() -> None:
    answer = band(2, b"progress\n") + b"PACK raw /srv/x bytes" + b"more"
    assert await filtered(answer, 6) == answer
