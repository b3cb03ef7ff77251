"""A push whose pack reaches the gateway slowly: one smart-HTTP receive-pack POST, sent
in chunks with pauses (what a large import over a slow link looks like to the cluster).

`git push` itself cannot be throttled from outside, and it sends a probe POST before a
large body; this client sends exactly one request - the ref update command and the pack
that `git pack-objects` builds from a work tree - and reads git's report-status.
"""

from __future__ import annotations

import base64
import http.client
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cluster.testing import run_git

ZERO = "0" * 40


def pkt_line(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


def receive_pack_body(work: Path, old: str, new: str, ref: str = "refs/heads/main") -> bytes:
    """The request body of a push of `new` over `old` (ZERO: a new ref)."""
    revs = f"{new}\n" + ("" if old == ZERO else f"^{old}\n")
    pack = subprocess.run(
        ["git", "pack-objects", "--stdout", "--revs", "-q"],
        input=revs.encode(),
        cwd=work,
        capture_output=True,
        check=True,
    ).stdout
    return pkt_line(f"{old} {new} {ref}\0report-status\n") + b"0000" + pack


@dataclass
class SlowPush:
    """One receive-pack POST sent `chunk` bytes at a time, `pause` seconds apart, in a
    thread (`start`, then `wait`). `sent` counts the bytes handed to the socket;
    `hold` (an Event, set by default) stops the sending while cleared."""

    url: str  # the repository's git URL with basic-auth credentials
    body: bytes
    chunk: int = 64 * 1024
    pause: float = 0.2
    sent: int = 0
    status: int = 0
    response: bytes = b""
    error: str = ""
    hold: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.hold.set()

    def _chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), self.chunk):
            self.hold.wait()
            piece = self.body[start : start + self.chunk]
            yield piece
            self.sent += len(piece)
            time.sleep(self.pause)

    def _run(self) -> None:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600)
        auth = f"{parts.username}:{parts.password}"
        headers = {
            "Authorization": "Basic " + base64.b64encode(auth.encode()).decode(),
            "Content-Type": "application/x-git-receive-pack-request",
            "Accept": "application/x-git-receive-pack-result",
        }
        try:
            conn.request(
                "POST",
                f"{parts.path}/git-receive-pack",
                body=self._chunks(),
                headers=headers,
                encode_chunked=True,
            )
            answer = conn.getresponse()
            self.status = answer.status
            self.response = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def start(self) -> SlowPush:
        self._thread = threading.Thread(target=self._run, name="slow-push", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float = 300.0) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"slow push still running after {timeout}s ({self.sent} bytes sent)")

    def acknowledged(self, ref: str = "refs/heads/main") -> bool:
        """Whether git's report says the pack unpacked and `ref` was updated."""
        return self.status == 200 and b"unpack ok" in self.response and f"ok {ref}".encode() in self.response


def head_of(work: Path) -> str:
    return run_git("rev-parse", "HEAD", cwd=work).stdout.strip()
