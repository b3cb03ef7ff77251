"""Server interceptors shared by nodes and proxies.

- `ErrorInterceptor` translates our exception tree (common.errors) into gRPC status
  codes at the boundary, so handlers simply raise; unexpected exceptions become
  INTERNAL with a logged traceback (the client sees neither the exception's class nor
  its text, only the correlation id; a generated servicer's unimplemented method:
  UNIMPLEMENTED), and the server keeps serving. Every message is passed through
  `common.errors.client_message` (no absolute path, bounded length). A request message
  that does not parse is INVALID_ARGUMENT (grpc alone answers UNKNOWN or INTERNAL), even
  when a streaming handler swallowed the error it raised.
- `CorrelationInterceptor` sets `common.logs.correlation_id` from request metadata (or
  a new id) for the duration of the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from common.errors import GitraftError, InvalidArgumentError, client_message, quoted
from common.logs import CORRELATION_METADATA_KEY, correlation_id, new_correlation_id

log = logging.getLogger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Any]]

# How long a refused request stream is read (and dropped) before its status is sent:
# in all, and while the client sends nothing (it may be waiting for our answer).
DRAIN_SECONDS = 5.0
DRAIN_IDLE_SECONDS = 0.5


async def drain_requests(
    context: grpc.aio.ServicerContext, seconds: float = DRAIN_SECONDS, idle: float = DRAIN_IDLE_SECONDS
) -> None:
    """Read and drop the rest of a request stream, for at most `seconds` in all and
    `idle` seconds without a message.

    Call it before ending a client-streaming call early with an error. A grpc.aio client
    whose write fails because the call already ended reports INTERNAL "Internal error
    from Core" instead of the server's status (grpc/grpc#36066); once the client has
    half-closed, no write can fail. Memory: one message at a time. Past either bound (a
    client that keeps sending, or one waiting for an answer) the caller ends the call
    anyway and the race is back. Never raises.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while (left := deadline - loop.time()) > 0:
            if await asyncio.wait_for(context.read(), min(idle, left)) is grpc.aio.EOF:
                return
    except Exception:  # a timeout, a call already over: nothing left to drain
        pass


async def _abort_for(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    """End the call with the status `exc` stands for. The client gets
    `common.errors.client_message` of our own errors and, for anything else, only that
    it was internal and the correlation id; the full detail goes to the log."""
    if isinstance(exc, GitraftError):
        message = str(exc)
        safe = client_message(message)
        if safe != message:
            log.info("error message shortened for the client", extra={"method": method, "error": message})
        await context.abort(exc.code, safe)
    if isinstance(exc, NotImplementedError):  # a generated servicer's unimplemented method
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"method not implemented: {client_message(method)}"
        )
    log.error("unhandled error in rpc", exc_info=exc, extra={"method": method})
    await context.abort(
        grpc.StatusCode.INTERNAL, f"internal error (correlation id {correlation_id.get() or 'none'})"
    )


class _Malformed:
    """What a request message that does not parse deserializes to."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer`, returning a _Malformed instead of raising: grpc would answer a
    request that does not parse with UNKNOWN (unary) or INTERNAL (streams)."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:
            return _Malformed(exc)

    return parse


class _RequestCheck:
    """Turns the first malformed request message into InvalidArgumentError, and
    remembers it: a handler that swallows the error still ends INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.error: InvalidArgumentError | None = None

    def unary(self, request: Any) -> Any:
        if isinstance(request, _Malformed):
            self.error = InvalidArgumentError(f"malformed request message: {quoted(request.error)}")
            raise self.error
        return request

    async def stream(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            yield self.unary(request)


def _cid_from(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == CORRELATION_METADATA_KEY and isinstance(value, str):
            return value
    return new_correlation_id()


@contextlib.asynccontextmanager
async def _guarded(
    context: grpc.aio.ServicerContext, method: str, streaming: bool, check: _RequestCheck
) -> AsyncIterator[None]:
    """The body of one call with its correlation id set, ending in the status our
    exception (or a malformed request message) stands for."""
    token = correlation_id.set(_cid_from(context))
    try:
        yield
        if check.error is not None:
            raise check.error
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        # grpc's own UsageError / InternalError too (e.g. a write on a call the client
        # already left): re-raised, grpc would answer "Unexpected <class '...UsageError'>"
        if isinstance(exc, grpc.aio.BaseError) and context.done():
            log.debug("grpc error after the call ended", extra={"method": method, "error": str(exc)})
            return
        if streaming:
            await drain_requests(context)
        await _abort_for(check.error or exc, context, method)
    finally:
        correlation_id.reset(token)


def _wrap(handler: Any, method: str) -> Any:
    """`handler` with our exceptions (and malformed requests) turned into statuses."""
    kwargs = {
        "request_deserializer": _lenient(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    streaming = handler.request_streaming

    def checked(request: Any, check: _RequestCheck) -> Any:
        return check.stream(request) if streaming else check.unary(request)

    if handler.response_streaming:
        inner_stream = handler.unary_stream or handler.stream_stream

        async def stream_behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            check = _RequestCheck()
            async with _guarded(context, method, streaming, check):
                async for item in inner_stream(checked(request, check), context):
                    yield item

        factory = grpc.stream_stream_rpc_method_handler if streaming else grpc.unary_stream_rpc_method_handler
        return factory(stream_behavior, **kwargs)

    inner_unary = handler.unary_unary or handler.stream_unary

    async def unary_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        check = _RequestCheck()
        async with _guarded(context, method, streaming, check):
            return await inner_unary(checked(request, check), context)

    factory2 = grpc.stream_unary_rpc_method_handler if streaming else grpc.unary_unary_rpc_method_handler
    return factory2(unary_behavior, **kwargs)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Translates exceptions to status codes and sets the correlation id."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return _wrap(handler, handler_call_details.method or "")
