"""The git smart-HTTP gateway: HTTP in front of a SmartHTTPService (a node or a proxy).

Upstream is a gRPC address (the standalone `gitraft gateway`; a proxy's own gateway
before) or an in-process Upstream (the gateway inside a proxy calls its coordinator
directly: cluster.gateway.local); cluster.gateway.upstream states the interface.

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
- git's probe before a large POST (a body of `0000` alone) is answered 200 with an empty
  body by the gateway itself: upload-pack and receive-pack answer it with nothing and
  change nothing, so it costs no route, no write intent and no git process.
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
from cluster.gateway.upstream import GrpcUpstream, Upstream, UpstreamCall, UpstreamError
from common.auth import Tokens
from common.errors import InvalidArgumentError
from common.logs import correlation_id, new_correlation_id
from common.tls import ClientTls

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
MissingRepositoryHook = Callable[[str], Awaitable[bool] | bool]
# The whole body of git's probe before a large POST (remote-curl's probe_rpc: a flush
# packet alone, to find out whether authentication is needed). upload-pack and
# receive-pack answer it with nothing and change nothing, so the gateway answers it
# itself: no route, no write intent, no git process.
PROBE = b"0000"

NO_CACHE = {
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
}


class Gateway:
    """An aiohttp server translating git smart HTTP into SmartHTTPService calls.

    `upstream` is a gRPC address (called with `upstream_token`, `upstream_tls` and
    `upstream_options`) or an Upstream object (cluster.gateway.upstream; the token and
    TLS arguments are then unused)."""

    def __init__(
        self,
        upstream: str | Upstream,
        upstream_token: str,
        http_token: Tokens,
        on_missing_repository: MissingRepositoryHook | None = None,
        *,
        shutdown_grace: float = 5.0,
        upstream_tls: ClientTls | None = None,
        upstream_options: Sequence[tuple[str, Any]] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if isinstance(upstream, str):
            upstream = GrpcUpstream(upstream, upstream_token, tls=upstream_tls, options=upstream_options)
        self._upstream: Upstream = upstream
        self.upstream = upstream.name
        self.shutdown_grace = shutdown_grace
        self._ssl_context = ssl_context
        self._http_token = http_token
        self._on_missing = on_missing_repository
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
        await self._upstream.start()
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
        await self._upstream.stop()

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
        token = correlation_id.set(new_correlation_id())  # forwarded upstream
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
        git_protocol = request.headers.get("Git-Protocol", "")

        def call() -> UpstreamCall:
            return self._upstream.info_refs(service, relative, git_protocol)

        response = await self._relay(request, call(), service)
        if (
            response is None
            and service == gh.RECEIVE_PACK
            and self._on_missing is not None
            and await _call_hook(self._on_missing, relative)
        ):
            response = await self._relay(request, call(), service)
        return response or _text(404, f"repository not found: {relative!r}")

    async def _post_upload_pack(self, request: web.Request) -> web.StreamResponse:
        return await self._post(request, gh.UPLOAD_PACK)

    async def _post_receive_pack(self, request: web.Request) -> web.StreamResponse:
        return await self._post(request, gh.RECEIVE_PACK)

    async def _post(self, request: web.Request, service: str) -> web.StreamResponse:
        relative = gh.repository_path(request.match_info["repo"])
        if request.content_type != gh.request_type(service):
            return _text(415, f"unsupported content type {request.content_type!r}")
        body = _body(request)
        if request.content_length is not None and request.content_length <= len(PROBE):
            whole = await request.read()
            if whole == PROBE:
                return web.Response(status=200, headers={**NO_CACHE, "Content-Type": gh.result_type(service)})
            body = _once(whole)
        git_protocol = request.headers.get("Git-Protocol", "")
        call = self._upstream.post(service, relative, git_protocol, body)
        response = await self._relay(request, call, service)
        return response or _text(404, f"repository not found: {relative!r}")

    async def _relay(
        self, request: web.Request, call: UpstreamCall, service: str
    ) -> web.StreamResponse | None:
        """Stream `call`'s answer as the HTTP response; None when upstream says NOT_FOUND."""
        try:
            try:
                first = await call.read()
            except UpstreamError as exc:
                if exc.code == grpc.StatusCode.NOT_FOUND:
                    return None
                return _upstream_error(exc)
            response = await self._start_response(request, service)
            await self._copy(request, call, first, response)
            return response
        finally:
            await call.close()

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
        self, request: web.Request, call: UpstreamCall, chunk: bytes | None, response: web.StreamResponse
    ) -> None:
        """Write `chunk` and every later one of `call`, then end the response; abort the
        connection instead when upstream fails (see the module's contract)."""
        try:
            while chunk is not None:
                if chunk:
                    await response.write(chunk)
                chunk = await call.read()
        except UpstreamError as exc:
            log.warning("upstream failed mid-response", extra={"code": str(exc.code), "error": exc.details})
            if request.transport is not None:
                request.transport.close()  # what was written is flushed; no terminating chunk
            return
        except ConnectionResetError:
            log.info("client went away mid-response")
            return
        await response.write_eof()


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body, CHUNK_SIZE bytes at a time."""
    async for chunk in request.content.iter_chunked(CHUNK_SIZE):
        yield chunk


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _call_hook(hook: MissingRepositoryHook, relative_path: str) -> bool:
    result = hook(relative_path)
    return bool(await result) if inspect.isawaitable(result) else bool(result)


def _upstream_error(exc: UpstreamError) -> web.Response:
    status = gh.http_status_for(exc.code)
    log.info("upstream refused", extra={"code": str(exc.code), "status": status, "error": exc.details})
    return _text(status, exc.details or str(exc.code))


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message.rstrip("\n") + "\n", headers=NO_CACHE)
