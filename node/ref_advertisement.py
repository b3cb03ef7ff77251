"""Ref listings of the smart protocol answered from the repository's files, without git.

Two answers list only refs, and starting git for them is most of what they cost a node
(a process, its pipes, its reaping): the protocol v2 `ls-refs` command (what an
up-to-date fetch, `ls-remote` and the first request of a clone ask upload-pack) and the
protocol v0 ref advertisement of `receive-pack` (the GET before every push). This module
builds both from the refs as they are on disk when it runs, byte for byte what git 2.x
writes (tests/integration/test_node_ref_advertisement.py compares the two):

- `ls_refs(path, body)`: the answer to a stateless `ls-refs` request `body`, or None
  when the request asks for anything but `peel`, `symrefs`, `unborn` and `ref-prefix`
  arguments (git then answers it).
- `receive_pack_advertisement(path, capabilities)`: the refs with git's own
  `capabilities` line (taken from a git run: they depend on git and the configuration,
  never on refs; see node.smarthttp_service).

Freshness: the refs are read from the files each time (a new pygit2 Repository), so an
answer includes every ref update that finished before it started, as git's would.

Anything this module does not reproduce exactly makes it answer None, so git answers:
a repository whose config mentions hidden refs, `lsrefs.*`, namespaces or alternates
(`.have` lines); a symbolic ref under refs/; a ref whose object is missing; a ref
deleted while being listed; a name that is not ASCII. Blocking (reads files): call it
from a worker thread.
"""

from __future__ import annotations

from pathlib import Path

import pygit2

ZERO_OID = "0" * 40
FLUSH = b"0000"
FLUSH_PACKET = 0
DELIM_PACKET = 1
# Request bodies larger than this are never ls-refs requests answered here.
MAX_REQUEST = 64 * 1024
LS_REFS = b"command=ls-refs\n"
# Configuration this module does not interpret: its presence hands the answer to git.
_CONFIG_MARKERS = (b"hiderefs", b"lsrefs", b"namespace", b"alternate")
_CAPABILITIES = ("agent=", "object-format=sha1\n", "object-format=sha1")


class Unsupported(Exception):
    """Something git would answer differently than this module: let git answer."""


# What reading a repository's refs may raise besides Unsupported; each makes git answer.
_READ_ERRORS = (Unsupported, pygit2.GitError, KeyError, ValueError, OSError)


def pkt_line(data: bytes) -> bytes:
    return b"%04x%s" % (len(data) + 4, data)


Packet = bytes | int  # data, or FLUSH_PACKET / DELIM_PACKET


def parse_pkt_lines(body: bytes) -> list[Packet] | None:
    """The packets of `body` (data as bytes, a flush or delimiter packet as
    FLUSH_PACKET / DELIM_PACKET), or None when `body` is not whole pkt-lines."""
    packets: list[Packet] = []
    at = 0
    while at < len(body):
        head = body[at : at + 4]
        try:
            size = int(head, 16)
        except ValueError:
            return None
        if len(head) < 4 or head != b"%04x" % size:
            return None
        if size in (FLUSH_PACKET, DELIM_PACKET):
            packets.append(size)
            at += 4
            continue
        if size < 4 or at + size > len(body):
            return None
        packets.append(body[at + 4 : at + size])
        at += size
    return packets


def is_ls_refs(body: bytes) -> bool:
    """Whether `body` starts like a v2 ls-refs request (cheap test on a prefix)."""
    return body.startswith(pkt_line(LS_REFS))


def ls_refs(path: Path, body: bytes) -> bytes | None:
    """The answer of `git upload-pack --stateless-rpc` (protocol v2) to the ls-refs
    request `body`, or None when git must answer it (see module doc)."""
    request = _ls_refs_request(body)
    if request is None:
        return None
    peel, symrefs, unborn, prefixes = request
    try:
        repo = _open(path)
        refs = _refs(repo)
        out = bytearray()
        head = _head(repo, peel, symrefs, unborn)
        if head is not None and _matches("HEAD", prefixes):
            out += pkt_line(head)
        for name, oid in refs:
            if _matches(name, prefixes):
                line = f"{oid} {name}"
                if peel and (peeled := _peeled(repo, oid)) is not None:
                    line += f" peeled:{peeled}"
                out += pkt_line(line.encode() + b"\n")
    except _READ_ERRORS:
        return None
    return bytes(out + FLUSH)


def receive_pack_advertisement(path: Path, capabilities: bytes) -> bytes | None:
    """The answer of `git receive-pack --stateless-rpc --advertise-refs` (protocol v0)
    given git's `capabilities` (the bytes after NUL on its first line, newline
    excluded), or None when git must answer it (see module doc)."""
    try:
        refs = _refs(_open(path))
    except _READ_ERRORS:
        return None
    name, oid = refs[0] if refs else ("capabilities^{}", ZERO_OID)
    out = bytearray(pkt_line(f"{oid} {name}".encode() + b"\0" + capabilities + b"\n"))
    for name, oid in refs[1:]:
        out += pkt_line(f"{oid} {name}\n".encode())
    return bytes(out + FLUSH)


def capabilities_key(args: list[str], path: Path) -> tuple[str, str, tuple[str, ...], bytes] | None:
    """The key under which a repository's receive-pack capabilities are kept: git's
    arguments and the repository's config (None when it cannot be read)."""
    try:
        config = (path / "config").read_bytes()
    except OSError:
        return None
    return ("receive-pack capabilities", "", tuple(args), config)


def capabilities_of(advertisement: bytes) -> bytes | None:
    """The capabilities of a v0 advertisement git wrote (its first line's part after
    NUL), or None when it does not look like one or names a one-time value (a push
    certificate nonce, a session id)."""
    packets = parse_pkt_lines(advertisement)
    if not packets or packets[-1] != FLUSH_PACKET:
        return None
    first = packets[0]
    if not isinstance(first, bytes) or b"\0" not in first or not first.endswith(b"\n"):
        return None
    capabilities = first.split(b"\0", 1)[1][:-1]
    if b"push-cert" in capabilities or b"session-id" in capabilities:
        return None
    return capabilities


# --- reading ------------------------------------------------------------------------


def _open(path: Path) -> pygit2.Repository:
    try:
        config = (path / "config").read_bytes().lower()
    except OSError as exc:
        raise Unsupported from exc
    if any(marker in config for marker in _CONFIG_MARKERS):
        raise Unsupported
    if (path / "objects" / "info" / "alternates").exists():
        raise Unsupported
    try:
        return pygit2.Repository(str(path))
    except pygit2.GitError as exc:
        raise Unsupported from exc


def _refs(repo: pygit2.Repository) -> list[tuple[str, str]]:
    """(name, oid) of every ref under refs/, sorted by name as git sorts (bytes)."""
    out: list[tuple[str, str]] = []
    for raw in repo.raw_listall_references():
        if not raw.isascii():
            raise Unsupported
        name = raw.decode()
        if not name.startswith("refs/"):
            continue
        try:
            ref = repo.lookup_reference(name)
        except (KeyError, pygit2.GitError) as exc:
            raise Unsupported from exc  # deleted while listed
        if ref.type != pygit2.enums.ReferenceType.DIRECT:
            raise Unsupported
        oid = str(ref.target)
        if ref.target not in repo.odb:
            raise Unsupported  # git skips broken refs
        out.append((name, oid))
    out.sort(key=lambda item: item[0].encode())
    return out


def _head(repo: pygit2.Repository, peel: bool, symrefs: bool, unborn: bool) -> bytes | None:
    """ls-refs' HEAD line (newline included), or None when it sends none."""
    try:
        head = repo.lookup_reference("HEAD")
    except (KeyError, pygit2.GitError):
        return None
    if head.type == pygit2.enums.ReferenceType.DIRECT:
        oid = str(head.target)
        if head.target not in repo.odb:
            raise Unsupported
        line = f"{oid} HEAD"
    else:
        target = head.target
        if not isinstance(target, str) or not target.isascii():
            raise Unsupported
        try:
            resolved = repo.lookup_reference(target)
        except KeyError:
            resolved = None  # unborn
        except pygit2.GitError as exc:
            raise Unsupported from exc
        if resolved is None:
            if not (unborn and symrefs):
                return None
            return f"unborn HEAD symref-target:{target}\n".encode()
        if resolved.type != pygit2.enums.ReferenceType.DIRECT or resolved.target not in repo.odb:
            raise Unsupported
        oid = str(resolved.target)
        line = f"{oid} HEAD"
        if symrefs:
            line += f" symref-target:{target}"
    if peel and (peeled := _peeled(repo, oid)) is not None:
        line += f" peeled:{peeled}"
    return line.encode() + b"\n"


def _peeled(repo: pygit2.Repository, oid: str) -> str | None:
    """What an annotated tag `oid` finally points at (None for anything else)."""
    obj = repo.get(oid)
    if obj is None:
        raise Unsupported
    if obj.type != pygit2.enums.ObjectType.TAG:
        return None
    try:
        return str(obj.peel(None).id)
    except (pygit2.GitError, ValueError) as exc:
        raise Unsupported from exc


def _matches(name: str, prefixes: list[str]) -> bool:
    return not prefixes or any(name.startswith(p) for p in prefixes)


def _ls_refs_request(body: bytes) -> tuple[bool, bool, bool, list[str]] | None:
    """(peel, symrefs, unborn, prefixes) of a plain ls-refs request, else None."""
    if len(body) > MAX_REQUEST or not is_ls_refs(body):
        return None
    packets = parse_pkt_lines(body)
    if packets is None or packets[-1] != FLUSH_PACKET or FLUSH_PACKET in packets[:-1]:
        return None
    delim = packets.index(DELIM_PACKET) if DELIM_PACKET in packets else len(packets) - 1
    capabilities, arguments = packets[1:delim], packets[delim + 1 : -1]
    for packet in capabilities:
        if not isinstance(packet, bytes) or not packet.decode("ascii", "replace").startswith(_CAPABILITIES):
            return None
    peel = symrefs = unborn = False
    prefixes: list[str] = []
    for packet in arguments:
        if not isinstance(packet, bytes):
            return None
        text = packet.decode("ascii", "replace").removesuffix("\n")
        if text == "peel":
            peel = True
        elif text == "symrefs":
            symrefs = True
        elif text == "unborn":
            unborn = True
        elif text.startswith("ref-prefix ") and text.isascii() and len(prefixes) < 1024:
            prefixes.append(text.removeprefix("ref-prefix "))
        else:
            return None
    return peel, symrefs, unborn, prefixes
