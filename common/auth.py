"""Token authentication for gRPC, on both sides.

Clients send `authorization: Bearer <token>` metadata. Servers refuse every RPC except
the grpc.health.v1 and reflection services with UNAUTHENTICATED when it is missing or
wrong. A server accepts any of several tokens (`Tokens`: one string or a sequence), so
a token is rotated without downtime: accept old and new, move the clients, then drop
the old one. No configured token disables the check (for tests of the check only).
A refused client stream is read to its end first (bounded, see
`common.interceptors.drain_requests`), so the client sees UNAUTHENTICATED.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from common.interceptors import drain_requests

AUTH_METADATA_KEY = "authorization"
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# One accepted token, or several (empty strings are ignored).
Tokens = str | Sequence[str]


def token_list(tokens: Tokens) -> tuple[str, ...]:
    """`tokens` as a tuple of the non-empty tokens, in order."""
    if isinstance(tokens, str):
        return (tokens,) if tokens else ()
    return tuple(t for t in tokens if t)


def any_token_equal(offered: bytes, tokens: Tokens) -> bool:
    """Whether `offered` equals one of `tokens`; compares with every one, in constant
    time each, so the time taken does not tell which matched."""
    matched = False
    for token in token_list(tokens):
        matched |= hmac.compare_digest(offered, token.encode())
    return matched


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that carries `token`."""
    return ((AUTH_METADATA_KEY, f"Bearer {token}"),)


def token_matches(metadata: Any, tokens: Tokens) -> bool:
    """Whether invocation metadata carries exactly one of `tokens` (constant-time)."""
    for key, value in metadata or ():
        if key == AUTH_METADATA_KEY and isinstance(value, str) and value.startswith("Bearer "):
            return any_token_equal(value[len("Bearer ") :].encode(), tokens)
    return False


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls that carry none of `tokens` before any handler runs."""

    def __init__(self, tokens: Tokens) -> None:
        self._token = token_list(tokens)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        method = handler_call_details.method or ""
        if not self._token or method.startswith(UNAUTHENTICATED_PREFIXES):
            return await continuation(handler_call_details)
        if token_matches(handler_call_details.invocation_metadata, self._token):
            return await continuation(handler_call_details)
        return _deny_handler(await continuation(handler_call_details))


def _deny_handler(handler: Any) -> Any:
    """A handler of the same streaming shape that aborts with UNAUTHENTICATED."""

    streaming = handler is not None and handler.request_streaming

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if streaming:
            await drain_requests(context)  # else the client may see INTERNAL instead
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await deny(request, context)
        yield  # pragma: no cover - makes this an async generator

    if handler is None:
        return grpc.unary_unary_rpc_method_handler(deny)
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(deny, **kwargs)
