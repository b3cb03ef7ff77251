"""grpc's own exceptions raised inside a handler reach the client as INTERNAL with a
correlation id, never with their class name (a real grpc.aio server on 127.0.0.1).

Red before: UsageError and InternalError were re-raised and grpc answered UNKNOWN
"Unexpected <class 'grpc._cython.cygrpc.UsageError'>: Channel is closed."."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.errors import NotFoundError
from common.interceptors import ErrorInterceptor


class Raising(health_pb2_grpc.HealthServicer):
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def Check(self, request: Any, context: Any) -> Any:
        raise self.exc


async def answer_to(exc: Exception) -> grpc.aio.AioRpcError:
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    health_pb2_grpc.add_HealthServicer_to_server(Raising(exc), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            return info.value
    finally:
        await server.stop(0)


@pytest.mark.parametrize(
    "exc",
    [grpc.aio.UsageError("Channel is closed."), grpc.aio.InternalError("boom"), RuntimeError("/abs/path")],
    ids=["usage", "internal", "runtime"],
)
async def test_grpc_and_other_errors_are_internal_without_their_class_or_text(exc: Exception) -> None:
    error = await answer_to(exc)
    assert error.code() == grpc.StatusCode.INTERNAL, (error.code(), error.details())
    details = error.details() or ""
    assert details.startswith("internal error (correlation id ")
    assert "class" not in details and "Error" not in details and str(exc) not in details


async def test_our_own_errors_keep_their_status_and_message() -> None:
    error = await answer_to(NotFoundError("repository not found: 'a.git'"))
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "repository not found: 'a.git'")
