"""SmartHTTPService on a storage node: git's smart HTTP protocol as gRPC streams.

Each RPC runs `git upload-pack` or `git receive-pack` with `--stateless-rpc` on the
repository and passes bytes through unchanged, in chunks (node.pipes.GitPipe: bounded
memory, stdin always closed, the child killed when the caller goes away).

- InfoRefs*: `--advertise-refs`; no `# service=` preamble (the gateway writes it for v0).
  A protocol v2 upload-pack advertisement (capabilities, no refs) is answered from
  node.advertisement's cache after the first time. A v0 receive-pack advertisement (the
  GET before a push) is built from the refs on disk with the capabilities git gave
  for the same options and config (kept in that cache): no git process
  (node.ref_advertisement; git answers whatever that module does not reproduce).
- Post*: request chunks go to git's stdin while its stdout streams back. A protocol v2
  `ls-refs` request (an up-to-date fetch, ls-remote) is answered from the refs on disk
  by node.ref_advertisement when it can, without git.
- `git_protocol` becomes GIT_PROTOCOL (e.g. "version=2"); `git_config_options` become
  `-c key=value`, only for the exact keys node.git_config allows. Then the node's own
  options are added, and node.git_config's pins last, so they win: receive-pack always
  checks incoming objects by the node's fsck policy (node.fsck), accepts force-pushes
  and never starts `gc --auto`; upload-pack serves partial clones (filters); the
  repository stays bare.
- receive-pack's messages to the client (`remote: error: ... Unable to create
  '/srv/.../refs/heads/main.lock'`) name the repository by its relative path, never by
  its place on disk (node.answer_filter).
- A receive-pack cut off (its client went away) leaves its quarantine directory; when
  the last receive-pack running in the repository ends, it is removed (node.janitor).
- A non-zero exit of git ends the stream, after whatever git wrote (which carries git's
  own in-band error for the client), with the tail of its stderr: INVALID_ARGUMENT when
  git complained about the request (a malformed or truncated pkt-line, a want it never
  advertised), INTERNAL otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from common.errors import InvalidArgumentError
from gitraft.v1 import shared_pb2, smarthttp_pb2, smarthttp_pb2_grpc
from node import fsck, git_config
from node import ref_advertisement as refs_on_disk
from node.advertisement import AdvertisementCache, is_v2
from node.answer_filter import without_local_paths
from node.git import GitCommandError
from node.janitor import WriterCounts
from node.pipes import GitPipe
from node.storage import Storage

UPLOAD_PACK = "upload-pack"
RECEIVE_PACK = "receive-pack"

# Appended after the caller's options: the last `-c` wins.
NODE_CONFIG = {
    # info/refs and the POST are separate requests, possibly served by different replicas
    # or after a ref moved: serve any object this replica has, not only advertised tips
    # (as Gitaly does; whoever may read the repository may read its objects).
    # Partial clone (`--filter=blob:none`, `tree:0`...) and the lazy fetches that follow.
    UPLOAD_PACK: ("uploadpack.allowAnySHA1InWant=true", "uploadpack.allowFilter=true"),
    RECEIVE_PACK: (
        *fsck.receive_config(),
        "receive.denyNonFastForwards=false",
        "receive.denyDeletes=false",
        # No `gc --auto` after a push: a caller's gc.* options (gc.pruneExpire=now) would
        # prune objects a concurrent push still needs; maintenance is OptimizeRepository.
        "receive.autogc=false",
    ),
}

_GIT_PROTOCOL = re.compile(r"[A-Za-z0-9=:._-]{0,256}")
# What git says when the request body, not the repository, is at fault.
_REQUEST_ERRORS = (
    "protocol error",
    "the remote end hung up unexpectedly",
    "not our ref",
    "expected flush",
    "expected SHA1",
    "unknown capability",
)


def config_args(options: Sequence[str], service: str) -> list[str]:
    """`-c` arguments: the caller's `options` (node.git_config), the node's own for
    `service`, then the pinned ones. Raises InvalidArgumentError for a refused option."""
    return git_config.command_line(options, NODE_CONFIG[service])


def request_error(exc: GitCommandError) -> Exception:
    """InvalidArgumentError when git's stderr blames the request, else `exc` itself."""
    text = exc.stderr_text
    if any(marker in text for marker in _REQUEST_ERRORS):
        return InvalidArgumentError(f"malformed {exc.git_command} request: {exc.detail!r}")
    return exc


def protocol_env(git_protocol: str) -> dict[str, str]:
    """GIT_PROTOCOL for git from the client's Git-Protocol value (none when empty)."""
    if not _GIT_PROTOCOL.fullmatch(git_protocol):
        raise InvalidArgumentError(f"invalid git protocol: {git_protocol!r}")
    return {"GIT_PROTOCOL": git_protocol} if git_protocol else {}


class SmartHTTPServicer(smarthttp_pb2_grpc.SmartHTTPServiceServicer):
    """Serves SmartHTTPService for one storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.advertisements = AdvertisementCache()
        self.writers = WriterCounts()  # a cut-off push's quarantine removed (node.janitor)

    async def InfoRefsUploadPack(
        self, request: smarthttp_pb2.InfoRefsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[smarthttp_pb2.InfoRefsResponse]:
        async for chunk in self._advertise(UPLOAD_PACK, request):
            yield smarthttp_pb2.InfoRefsResponse(data=chunk)

    async def InfoRefsReceivePack(
        self, request: smarthttp_pb2.InfoRefsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[smarthttp_pb2.InfoRefsResponse]:
        async for chunk in self._advertise(RECEIVE_PACK, request):
            yield smarthttp_pb2.InfoRefsResponse(data=chunk)

    async def PostUploadPack(
        self,
        request_iterator: AsyncIterator[smarthttp_pb2.PostUploadPackRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[smarthttp_pb2.PostUploadPackResponse]:
        async for chunk in self._post(UPLOAD_PACK, request_iterator):
            yield smarthttp_pb2.PostUploadPackResponse(data=chunk)

    async def PostReceivePack(
        self,
        request_iterator: AsyncIterator[smarthttp_pb2.PostReceivePackRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[smarthttp_pb2.PostReceivePackResponse]:
        async for chunk in self._post(RECEIVE_PACK, request_iterator):
            yield smarthttp_pb2.PostReceivePackResponse(data=chunk)

    async def _advertise(self, service: str, request: smarthttp_pb2.InfoRefsRequest) -> AsyncIterator[bytes]:
        path = self.storage.existing_path_of(request.repository)
        args = [*config_args(request.git_config_options, service), service]
        args += ["--stateless-rpc", "--advertise-refs", str(path)]
        key = self.advertisements.key(service, request.git_protocol, args, path)
        if key is not None and (cached := self.advertisements.get(key)) is not None:
            yield cached  # protocol v2: capabilities only (node.advertisement)
            return
        refs_key = self._receive_key(service, request, args, path)
        if refs_key is not None and (capabilities := self.advertisements.get(refs_key)) is not None:
            built = await asyncio.to_thread(refs_on_disk.receive_pack_advertisement, path, capabilities)
            if built is not None:
                yield built
                return
        written: list[bytes] = []
        async with GitPipe(args, cwd=path, env=protocol_env(request.git_protocol)) as pipe:
            async for chunk in pipe.stdout_chunks():
                written.append(chunk)
                yield chunk
            await pipe.check()
        if key is not None:
            self.advertisements.put(key, b"".join(written))
        elif refs_key is not None and (capabilities := refs_on_disk.capabilities_of(b"".join(written))):
            self.advertisements.put(refs_key, capabilities)

    @staticmethod
    def _receive_key(
        service: str, request: smarthttp_pb2.InfoRefsRequest, args: list[str], path: Path
    ) -> Any:
        """The cache key of a v0 receive-pack advertisement's capabilities (None: never
        built without git: another protocol, or the caller's own options, which may hide
        refs). The capabilities depend on git, the options and the repository's config
        (the key's parts), never on refs."""
        if service != RECEIVE_PACK or request.git_protocol or request.git_config_options:
            return None
        return refs_on_disk.capabilities_key(args, path)

    async def _post(
        self,
        service: str,
        requests: AsyncIterator[smarthttp_pb2.PostUploadPackRequest | smarthttp_pb2.PostReceivePackRequest],
    ) -> AsyncIterator[bytes]:
        requests = aiter(requests)
        first = await anext(requests, None)
        if first is None:
            raise InvalidArgumentError("empty request stream")
        path = self.storage.existing_path_of(_repository_of(first))
        args = [*config_args(first.git_config_options, service), service, "--stateless-rpc", str(path)]
        env = protocol_env(first.git_protocol)
        body = _data_of(first.data, requests)
        if service == UPLOAD_PACK and is_v2(first.git_protocol) and not first.git_config_options:
            head, body = await _peek_ls_refs(body)
            if head is not None:
                answer = await asyncio.to_thread(refs_on_disk.ls_refs, path, head)
                if answer is not None:
                    yield answer
                    return
                body = _data_of(head, body)
        writing = self.writers.writing(path) if service == RECEIVE_PACK else contextlib.nullcontext()
        async with writing, GitPipe(args, cwd=path, env=env, chunks=body) as pipe:
            chunks = pipe.stdout_chunks()
            if service == RECEIVE_PACK:  # its messages name files by their place on disk
                chunks = without_local_paths(chunks, path, first.repository.relative_path)
            async for chunk in chunks:
                yield chunk
            try:
                await pipe.check()
            except GitCommandError as exc:
                raise request_error(exc) from exc


async def _peek_ls_refs(body: AsyncIterator[bytes]) -> tuple[bytes | None, AsyncIterator[bytes]]:
    """(the whole request, an empty rest) when `body` is an ls-refs request of at most
    ref_advertisement.MAX_REQUEST bytes, else (None, the same bytes as `body`)."""
    seen = bytearray()
    prefix = refs_on_disk.pkt_line(refs_on_disk.LS_REFS)
    async for chunk in body:
        seen += chunk
        looks_like = seen.startswith(prefix) if len(seen) >= len(prefix) else prefix.startswith(seen)
        if not looks_like or len(seen) > refs_on_disk.MAX_REQUEST:
            return None, _data_of(bytes(seen), body)
    return (bytes(seen), _nothing()) if seen.startswith(prefix) else (None, _data_of(bytes(seen), _nothing()))


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""


def _repository_of(
    request: smarthttp_pb2.PostUploadPackRequest | smarthttp_pb2.PostReceivePackRequest,
) -> shared_pb2.Repository:
    if not request.HasField("repository"):
        raise InvalidArgumentError("repository is required in the first message")
    return request.repository


async def _data_of(first: bytes, rest: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """The request body: `first`, then every later message's data (or chunk)."""
    yield first
    async for request in rest:
        yield request if isinstance(request, bytes) else request.data
