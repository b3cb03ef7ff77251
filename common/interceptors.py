"""Server interceptors shared by nodes and proxies.

- `ErrorInterceptor` translates our exception tree (common.errors) into gRPC status
  codes at the boundary, so handlers simply raise; unexpected exceptions become
  INTERNAL with a logged traceback, and the server keeps serving.
- `CorrelationInterceptor` sets `common.logs.correlation_id` from request metadata (or
  a new id) for the duration of the call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from common.errors import GitraftError
from common.logs import CORRELATION_METADATA_KEY, correlation_id, new_correlation_id

log = logging.getLogger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Any]]


async def _abort_for(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(exc, GitraftError):
        await context.abort(exc.code, str(exc))
    log.error("unhandled error in rpc", exc_info=exc, extra={"method": method})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


def _wrap(handler: Any, method: str) -> Any:
    def cid_from(context: grpc.aio.ServicerContext) -> str:
        for key, value in context.invocation_metadata() or ():
            if key == CORRELATION_METADATA_KEY and isinstance(value, str):
                return value
        return new_correlation_id()

    if handler.response_streaming:
        inner_stream = handler.unary_stream or handler.stream_stream

        async def stream_behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            token = correlation_id.set(cid_from(context))
            try:
                async for item in inner_stream(request, context):
                    yield item
            except (grpc.aio.AbortError, grpc.aio.BaseError):
                raise
            except Exception as exc:
                await _abort_for(exc, context, method)
            finally:
                correlation_id.reset(token)

        factory = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        return factory(
            stream_behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    inner_unary = handler.unary_unary or handler.stream_unary

    async def unary_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = correlation_id.set(cid_from(context))
        try:
            return await inner_unary(request, context)
        except (grpc.aio.AbortError, grpc.aio.BaseError):
            raise
        except Exception as exc:
            await _abort_for(exc, context, method)
        finally:
            correlation_id.reset(token)

    factory2 = (
        grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.stream_unary_rpc_method_handler
    )
    return factory2(
        unary_behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Translates exceptions to status codes and sets the correlation id."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return _wrap(handler, handler_call_details.method or "")
