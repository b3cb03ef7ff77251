"""The git smart-HTTP gateway: HTTP in front of a SmartHTTPService (a node or a proxy).

    GET  /<path>.git/info/refs?service=git-upload-pack|git-receive-pack -> InfoRefs*
    POST /<path>.git/git-upload-pack                                  -> PostUploadPack
    POST /<path>.git/git-receive-pack                                 -> PostReceivePack

Contract:
- Bytes stream both ways in chunks (request body read CHUNK_SIZE at a time, each
  upstream message written as it arrives); nothing holds a whole pack. aiohttp has
  already decompressed a gzip request body.
- Every request needs HTTP basic auth whose password is the gateway's token (any user
  name); otherwise 401 with WWW-Authenticate.
- The client's Git-Protocol header is forwarded; the v0 `# service=` preamble is written
  only when the client did not ask for protocol v2.
- Errors before the first byte of a response become an HTTP status with the message as
  text/plain (see gateway_http.http_status_for). An upstream error after the response
  started aborts the connection without the end of the chunked body, so the client sees
  an incomplete response and fails, never a short one that looks whole.
- When the client goes away the upstream call is cancelled, which kills git upstream.
- `on_missing_repository(relative_path)`, when given, is asked (sync or async) once
  when a push targets a repository upstream does not have; True means "created, retry".
"""

from __future__ import annotations

import inspect
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from aiohttp import web

from cluster.gateway import http as gh
from common.auth import Tokens, bearer_metadata
from common.errors import InvalidArgumentError
from common.logs import CORRELATION_METADATA_KEY, correlation_id, new_correlation_id
from common.tls import ClientTls, aio_channel
from gitraft.v1 import shared_pb2, smarthttp_pb2, smarthttp_pb2_grpc

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
MissingRepositoryHook = Callable[[str], Awaitable[bool] | bool]

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]
NO_CACHE = {
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
}
_POST_REQUESTS: dict[str, Any] = {
    gh.UPLOAD_PACK: smarthttp_pb2.PostUploadPackRequest,
    gh.RECEIVE_PACK: smarthttp_pb2.PostReceivePackRequest,
}


class Gateway:
    """An aiohttp server translating git smart HTTP into SmartHTTPService calls."""

    def __init__(
        self,
        upstream: str,
        upstream_token: str,
        http_token: Tokens,
        on_missing_repository: MissingRepositoryHook | None = None,
        *,
        shutdown_grace: float = 5.0,
        upstream_tls: ClientTls | None = None,
        upstream_options: Sequence[tuple[str, Any]] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = upstream
        self.shutdown_grace = shutdown_grace
        self._upstream_tls = upstream_tls
        self._upstream_options = [*GRPC_OPTIONS, *upstream_options]
        self._ssl_context = ssl_context
        self._upstream_token = upstream_token
        self._http_token = http_token
        self._on_missing = on_missing_repository
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        """The aiohttp application (routes only; `start` runs it)."""
        app = web.Application(middlewares=[self._auth_middleware])
        app.router.add_get("/{repo:.+}/info/refs", self._info_refs)
        app.router.add_post("/{repo:.+}/git-upload-pack", self._post_upload_pack)
        app.router.add_post("/{repo:.+}/git-receive-pack", self._post_receive_pack)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Connect upstream and listen on host:port; returns the bound port."""
        self._channel = aio_channel(self.upstream, self._upstream_options, self._upstream_tls)
        self._stub = smarthttp_pb2_grpc.SmartHTTPServiceStub(self._channel)
        self._runner = web.AppRunner(
            self.app(), handle_signals=False, access_log=None, shutdown_timeout=self.shutdown_grace
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("gateway serving", extra={"host": host, "port": self.port, "upstream": self.upstream})
        return self.port

    async def stop(self) -> None:
        """Stop listening, give requests in flight `shutdown_grace` seconds, close upstream."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    @web.middleware
    async def _auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not gh.basic_auth_ok(request.headers.get("Authorization"), self._http_token):
            return web.Response(
                status=401,
                text="authentication required\n",
                headers={"WWW-Authenticate": 'Basic realm="gitraft"'},
            )
        token = correlation_id.set(new_correlation_id())  # forwarded upstream by _metadata
        try:
            return await handler(request)
        except InvalidArgumentError as exc:
            return _text(400, str(exc))
        finally:
            log.info("git http request", extra={"method": request.method, "path": request.path})
            correlation_id.reset(token)

    async def _info_refs(self, request: web.Request) -> web.StreamResponse:
        service = request.query.get("service", "")
        if service not in gh.SERVICES:
            return _text(400, f"unsupported service {service!r}: only smart http is served")
        relative = gh.repository_path(request.match_info["repo"])
        message = smarthttp_pb2.InfoRefsRequest(
            repository=shared_pb2.Repository(relative_path=relative),
            git_protocol=request.headers.get("Git-Protocol", ""),
        )
        method = (
            self._stub.InfoRefsUploadPack if service == gh.UPLOAD_PACK else self._stub.InfoRefsReceivePack
        )
        response = await self._relay(request, method(message, metadata=self._metadata()), service)
        if (
            response is None
            and service == gh.RECEIVE_PACK
            and self._on_missing is not None
            and await _call_hook(self._on_missing, relative)
        ):
            response = await self._relay(request, method(message, metadata=self._metadata()), service)
        return response or _text(404, f"repository not found: {relative!r}")

    async def _post_upload_pack(self, request: web.Request) -> web.StreamResponse:
        return await self._post(request, gh.UPLOAD_PACK, self._stub.PostUploadPack)

    async def _post_receive_pack(self, request: web.Request) -> web.StreamResponse:
        return await self._post(request, gh.RECEIVE_PACK, self._stub.PostReceivePack)

    async def _post(self, request: web.Request, service: str, method: Any) -> web.StreamResponse:
        relative = gh.repository_path(request.match_info["repo"])
        if request.content_type != gh.request_type(service):
            return _text(415, f"unsupported content type {request.content_type!r}")
        first = _POST_REQUESTS[service](
            repository=shared_pb2.Repository(relative_path=relative),
            git_protocol=request.headers.get("Git-Protocol", ""),
        )
        call = method(_body_messages(request, first), metadata=self._metadata())
        response = await self._relay(request, call, service)
        return response or _text(404, f"repository not found: {relative!r}")

    async def _relay(self, request: web.Request, call: Any, service: str) -> web.StreamResponse | None:
        """Stream `call`'s messages as the HTTP response; None when upstream says NOT_FOUND."""
        try:
            try:
                first = await call.read()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                return _upstream_error(exc)
            response = await self._start_response(request, service)
            await self._copy(request, call, first, response)
            return response
        finally:
            if not call.done():
                call.cancel()

    async def _start_response(self, request: web.Request, service: str) -> web.StreamResponse:
        git_protocol = request.headers.get("Git-Protocol", "")
        is_info_refs = request.method == "GET"
        content_type = gh.advertisement_type(service) if is_info_refs else gh.result_type(service)
        response = web.StreamResponse(status=200, headers={**NO_CACHE, "Content-Type": content_type})
        await response.prepare(request)
        if is_info_refs:
            await response.write(gh.service_preamble(service, git_protocol))
        return response

    async def _copy(
        self, request: web.Request, call: Any, message: Any, response: web.StreamResponse
    ) -> None:
        """Write `message` and every later one of `call`, then end the response; abort the
        connection instead when upstream fails (see the module's contract)."""
        try:
            while message is not grpc.aio.EOF:
                if message.data:
                    await response.write(message.data)
                message = await call.read()
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "upstream failed mid-response", extra={"code": str(exc.code()), "error": exc.details()}
            )
            if request.transport is not None:
                request.transport.close()  # what was written is flushed; no terminating chunk
            return
        except ConnectionResetError:
            log.info("client went away mid-response")
            return
        await response.write_eof()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (
            *bearer_metadata(self._upstream_token),
            (CORRELATION_METADATA_KEY, correlation_id.get() or new_correlation_id()),
        )


async def _body_messages(request: web.Request, first: Any) -> AsyncIterator[Any]:
    """The request as upstream messages: `first` (no data), then one per body chunk."""
    yield first
    cls = type(first)
    async for chunk in request.content.iter_chunked(CHUNK_SIZE):
        yield cls(data=chunk)


async def _call_hook(hook: MissingRepositoryHook, relative_path: str) -> bool:
    result = hook(relative_path)
    return bool(await result) if inspect.isawaitable(result) else bool(result)


def _upstream_error(exc: grpc.aio.AioRpcError) -> web.Response:
    status = gh.http_status_for(exc.code())
    log.info("upstream refused", extra={"code": str(exc.code()), "status": status, "error": exc.details()})
    return _text(status, exc.details() or str(exc.code()))


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message.rstrip("\n") + "\n", headers=NO_CACHE)
